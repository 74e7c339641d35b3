package api

import (
	"context"
	"fmt"
	"sync/atomic"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
)

// healthChecker answers grpc.health.v1 Check for the engine and for each
// runtime by name, so that an orchestrator's probe (a Kubernetes grpc
// probe, a Nomad grpc check) can watch one VM:
//
//   - "" and "vmre.v1.RuntimeService": the engine, SERVING until
//     [Handler.SetServing] says otherwise;
//   - a runtime's name: SERVING while a runtime of that name is running or
//     attached (the engine's live states: its probe, if any, answers),
//     NOT_SERVING while every runtime of that name is in another state
//     (starting, unhealthy, stopping, backoff, exited, failed, lost);
//   - any other name: NOT_FOUND, as the health protocol asks.
//
// Names are not unique in an engine: a relaunch under the same name while
// the failed runtime is still in the history is one VM to an orchestrator,
// so one live runtime of the name is enough.
//
// Each Check reads the engine's current snapshot: nothing is cached, so the
// answer is never staler than the engine's own state. It is safe for
// concurrent use.
type healthChecker struct {
	eng        *engine.Engine
	notServing atomic.Bool
}

var _ grpchealth.Checker = (*healthChecker)(nil)

func (c *healthChecker) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	switch req.Service {
	case "", vmrev1connect.RuntimeServiceName:
		return answer(!c.notServing.Load()), nil
	}
	found := false
	for _, rt := range c.eng.List() {
		if rt.Name != req.Service {
			continue
		}
		if live(rt.State) {
			return answer(true), nil
		}
		found = true
	}
	if !found {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no runtime named %q", req.Service))
	}
	return answer(false), nil
}

// live reports whether a runtime in state s is up and answering, as far as
// the engine knows.
func live(s engine.State) bool {
	return s == engine.StateRunning || s == engine.StateAttached
}

func answer(serving bool) *grpchealth.CheckResponse {
	if serving {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}
}
