package api

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"github.com/vmre/vmre/server"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// DefaultTailLines is how many lines TailOutput sends first when the
// request does not say.
const DefaultTailLines = 100

type service struct {
	engine   *engine.Engine
	shared   *sharedChanges
	reloader Reloader
	// tails bounds the output held by TailOutput's first messages.
	tails *byteBudget
	// streams counts the open streams for the metrics.
	streams *streamGauges
}

var _ vmrev1connect.RuntimeServiceHandler = (*service)(nil)

func (s *service) ListRuntimes(context.Context, *vmrev1.ListRuntimesRequest) (*vmrev1.ListRuntimesResponse, error) {
	return &vmrev1.ListRuntimesResponse{Runtimes: runtimesToProto(s.engine.List())}, nil
}

func (s *service) GetRuntime(_ context.Context, req *vmrev1.GetRuntimeRequest) (*vmrev1.GetRuntimeResponse, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, err
	}
	rt, events, err := s.engine.Get(req.GetId())
	if err != nil {
		return nil, toConnectError(err)
	}
	resp := &vmrev1.GetRuntimeResponse{Runtime: runtimeToProto(rt)}
	for _, ev := range events {
		resp.Events = append(resp.Events, eventToProto(ev))
	}
	return resp, nil
}

func (s *service) WatchRuntimes(ctx context.Context, _ *vmrev1.WatchRuntimesRequest, stream *connect.ServerStream[vmrev1.WatchRuntimesResponse]) error {
	w := s.engine.Watch()
	defer w.Close()
	s.streams.watchers.Add(1)
	defer s.streams.watchers.Add(-1)
	holdFlushes := flushHolder(ctx)
	defer holdFlushes(false) // the stream's end must reach the client
	var batch []engine.Change
	for {
		var err error
		batch, err = w.NextBatch(ctx, batch[:0])
		if err != nil {
			return toConnectError(err)
		}
		// Everything waiting goes out with one flush, after the last change.
		for i, c := range batch {
			holdFlushes(i < len(batch)-1)
			if err := stream.Send(s.shared.message(c)); err != nil {
				return fmt.Errorf("send change: %w", err)
			}
		}
		clear(batch) // do not keep old snapshots alive while waiting
	}
}

func (s *service) TailOutput(ctx context.Context, req *vmrev1.TailOutputRequest, stream *connect.ServerStream[vmrev1.TailOutputResponse]) error {
	if err := requireID(req.GetId()); err != nil {
		return err
	}
	n := int(req.GetLines())
	if n == 0 {
		n = DefaultTailLines
	}
	filter := engine.OutputFilter{MinLevel: levelFromProto(req.GetMinLevel()), Stream: streamFromProto(req.GetStream())}
	lines, follower, err := s.engine.TailOutput(req.GetId(), n, req.GetFollow(), filter)
	if err != nil {
		return toConnectError(err)
	}
	if follower != nil {
		defer follower.Close()
		s.streams.followers.Add(1)
		defer s.streams.followers.Add(-1)
	}
	cost := outputCost(lines)
	if !s.tails.take(cost) {
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%w: retry later, or ask for fewer lines", errTailBytes))
	}
	// The first message is sent even when empty, so a client knows the
	// stream is established.
	err = sendOutput(stream, s.engine.InstanceID(), lines, 0)
	s.tails.give(cost)
	if err != nil {
		return err
	}
	if follower == nil {
		return nil
	}
	for {
		lines, dropped, err := follower.Next(ctx)
		if errors.Is(err, engine.ErrClosed) {
			return nil // the runtime left the engine: the output has ended
		}
		if err != nil {
			return toConnectError(err)
		}
		if err := sendOutput(stream, s.engine.InstanceID(), lines, dropped); err != nil {
			return err
		}
	}
}

// lineStructBytes is about the size of a [subprocess.Line] itself (272
// bytes on 64-bit systems).
const lineStructBytes = 272

// outputCost is what lines count against the tail budget: their bytes and
// each line's own size.
func outputCost(lines []subprocess.Line) int {
	n := len(lines) * lineStructBytes
	for i := range lines {
		l := &lines[i]
		n += len(l.Text) + len(l.Message) + len(l.Fields) + len(l.Logger) + len(l.Caller) + len(l.LevelText) + len(l.Dump)
	}
	return n
}

// maxOutputMessageBytes bounds the encoded lines in one TailOutput
// message. An engine may keep more output than grpc-go's and grpc-js's
// default 4 MiB receive limit, so a long tail or backlog goes out in
// several messages; a single longer line still goes alone.
const maxOutputMessageBytes = 1 << 20

// sendOutput sends lines in messages of at most maxOutputMessageBytes
// (each line's encoded size, tag and length prefix included), at least
// one message, with the dropped count on the last: the follower dropped
// the lines that came right after these. Every message carries instanceID,
// the engine's.
func sendOutput(stream *connect.ServerStream[vmrev1.TailOutputResponse], instanceID string, lines []subprocess.Line, dropped uint64) error {
	out := linesToProto(lines)
	for first := true; first || len(out) > 0; first = false {
		n, size := 0, 0
		for n < len(out) {
			lineSize := protowire.SizeBytes(proto.Size(out[n])) + 1 // the repeated field's tag
			if n > 0 && size+lineSize > maxOutputMessageBytes {
				break
			}
			size += lineSize
			n++
		}
		msg := &vmrev1.TailOutputResponse{Lines: out[:n], EngineInstanceId: instanceID}
		if out = out[n:]; len(out) == 0 {
			msg.DroppedLines = dropped
		}
		if err := stream.Send(msg); err != nil {
			return fmt.Errorf("send output: %w", err)
		}
	}
	return nil
}

func (s *service) StopRuntime(ctx context.Context, req *vmrev1.StopRuntimeRequest) (*vmrev1.StopRuntimeResponse, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, err
	}
	rt, err := s.engine.Stop(ctx, req.GetId())
	if err != nil {
		return nil, toConnectError(err)
	}
	return &vmrev1.StopRuntimeResponse{Runtime: runtimeToProto(rt)}, nil
}

// RestartRuntime hands the request's ctx to engine.Restart, where it bounds
// only the wait: a client that times out or hangs up gets deadline_exceeded
// or canceled, and the restart still completes in the engine.
func (s *service) RestartRuntime(ctx context.Context, req *vmrev1.RestartRuntimeRequest) (*vmrev1.RestartRuntimeResponse, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, err
	}
	rt, err := s.engine.Restart(ctx, req.GetId())
	if err != nil {
		return nil, toConnectError(err)
	}
	return &vmrev1.RestartRuntimeResponse{Runtime: runtimeToProto(rt)}, nil
}

var errNoConfigFile = errors.New("the engine was not started with a config file (vmre run --config FILE)")

// ReloadConfig answers once the reload is applied; ctx bounds only the
// wait for its launches (see config.Runner.Reload).
func (s *service) ReloadConfig(ctx context.Context, _ *vmrev1.ReloadConfigRequest) (*vmrev1.ReloadConfigResponse, error) {
	if s.reloader == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errNoConfigFile)
	}
	plan, err := s.reloader.Reload(ctx)
	if err != nil {
		err = fmt.Errorf("reload refused, the running runtimes are unchanged: %w", err)
		if !errors.Is(err, vmre.ErrInvalidConfig) {
			// The file could not be read: the server's state, not the
			// request, is wrong.
			return nil, connect.NewError(connect.CodeFailedPrecondition, err)
		}
		return nil, toConnectError(err)
	}
	resp := &vmrev1.ReloadConfigResponse{Stopped: plan.Stop, Unchanged: plan.Keep}
	for _, rt := range plan.Start {
		resp.Started = append(resp.Started, rt.Name)
	}
	for _, rt := range plan.Restart {
		resp.Restarted = append(resp.Restarted, rt.Name)
	}
	return resp, nil
}

func requireID(id string) error {
	if id == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("id is empty"))
	}
	return nil
}

// toConnectError is the one place engine errors become status codes.
func toConnectError(err error) error {
	var connectErr *connect.Error
	switch {
	case errors.As(err, &connectErr):
		return connectErr
	case errors.Is(err, vmre.ErrInvalidConfig):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, engine.ErrUnknownRuntime):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, engine.ErrAttached):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, engine.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, engine.ErrStopped):
		return connect.NewError(connect.CodeAborted, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(server.CodeOf(err), err)
	default:
		// A relaunch that did not come up (handshake failed, process
		// exited): the runtime is unavailable; the message says why.
		return connect.NewError(connect.CodeUnavailable, err)
	}
}
