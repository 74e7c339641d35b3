package api

import (
	"bytes"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/engine"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/subprocess"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func stateToProto(s engine.State) vmrev1.RuntimeState {
	switch s {
	case engine.StateStarting:
		return vmrev1.RuntimeState_RUNTIME_STATE_STARTING
	case engine.StateRunning:
		return vmrev1.RuntimeState_RUNTIME_STATE_RUNNING
	case engine.StateStopping:
		return vmrev1.RuntimeState_RUNTIME_STATE_STOPPING
	case engine.StateExited:
		return vmrev1.RuntimeState_RUNTIME_STATE_EXITED
	case engine.StateFailed:
		return vmrev1.RuntimeState_RUNTIME_STATE_FAILED
	case engine.StateAttached:
		return vmrev1.RuntimeState_RUNTIME_STATE_ATTACHED
	case engine.StateBackoff:
		return vmrev1.RuntimeState_RUNTIME_STATE_BACKOFF
	case engine.StateUnhealthy:
		return vmrev1.RuntimeState_RUNTIME_STATE_UNHEALTHY
	case engine.StateLost:
		return vmrev1.RuntimeState_RUNTIME_STATE_LOST
	default:
		return vmrev1.RuntimeState_RUNTIME_STATE_UNSPECIFIED
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func runtimeToProto(rt engine.Runtime) *vmrev1.Runtime {
	out := &vmrev1.Runtime{
		Id:              rt.ID,
		Name:            rt.Name,
		Command:         rt.Command,
		State:           stateToProto(rt.State),
		Attached:        rt.Attached,
		Pid:             int64(rt.Pid),
		VmAddr:          rt.VMAddr,
		ProtocolVersion: rt.ProtocolVersion,
		StartedAt:       timestamp(rt.StartedAt),
		ExitedAt:        timestamp(rt.ExitedAt),
		LastError:       rt.LastError,
		Restarts:        uint32(max(rt.Restarts, 0)), //nolint:gosec // bounded by the number of restarts
		PeerAddr:        rt.PeerAddr,
		NextAttemptAt:   timestamp(rt.NextAttempt),
		Failures:        uint32(max(rt.Failures, 0)), //nolint:gosec // bounded by the restart policy
		Health:          healthToProto(rt.Health),
		Usage:           usageToProto(rt.Usage),
	}
	if rt.HandshakeDuration > 0 {
		out.HandshakeDuration = durationpb.New(rt.HandshakeDuration)
	}
	if rt.Exit != nil {
		out.ExitStatus = &vmrev1.ExitStatus{Code: int32(rt.Exit.Code), Signal: rt.Exit.Signal} //nolint:gosec // exit codes fit
	}
	return out
}

func healthToProto(h engine.Health) vmrev1.RuntimeHealth {
	switch h {
	case engine.HealthServing:
		return vmrev1.RuntimeHealth_RUNTIME_HEALTH_SERVING
	case engine.HealthFailing:
		return vmrev1.RuntimeHealth_RUNTIME_HEALTH_FAILING
	case engine.HealthUnimplemented:
		return vmrev1.RuntimeHealth_RUNTIME_HEALTH_UNIMPLEMENTED
	default:
		return vmrev1.RuntimeHealth_RUNTIME_HEALTH_UNSPECIFIED
	}
}

func usageToProto(u *engine.Usage) *vmrev1.ResourceUsage {
	if u == nil {
		return nil
	}
	return &vmrev1.ResourceUsage{
		Time:       timestamp(u.Time),
		CpuSeconds: u.CPUSeconds,
		CpuPercent: u.CPUPercent,
		RssBytes:   u.RSSBytes,
		Threads:    uint32(max(u.Threads, 0)),   //nolint:gosec // a count
		OpenFds:    uint32(max(u.OpenFDs, 0)),   //nolint:gosec // a count
		Processes:  uint32(max(u.Processes, 0)), //nolint:gosec // a count
	}
}

func runtimesToProto(rts []engine.Runtime) []*vmrev1.Runtime {
	out := make([]*vmrev1.Runtime, len(rts))
	for i, rt := range rts {
		out[i] = runtimeToProto(rt)
	}
	return out
}

func eventToProto(ev engine.Event) *vmrev1.RuntimeEvent {
	return &vmrev1.RuntimeEvent{Time: timestamp(ev.Time), State: stateToProto(ev.State), Message: ev.Message}
}

// engineInfo is what watch messages say of the engine itself.
type engineInfo struct {
	instanceID string
	started    time.Time
	version    string
}

// changeToProto converts c, a change of the engine described by info.
func changeToProto(c engine.Change, info engineInfo) *vmrev1.WatchRuntimesResponse {
	resp := &vmrev1.WatchRuntimesResponse{ServerTime: timestamp(c.Time), EngineInstanceId: info.instanceID}
	switch c.Kind {
	case engine.ChangeSnapshot:
		resp.Kind = &vmrev1.WatchRuntimesResponse_Snapshot_{Snapshot: &vmrev1.WatchRuntimesResponse_Snapshot{
			Runtimes:        runtimesToProto(c.Snapshot),
			EngineStartedAt: timestamp(info.started),
			EngineVersion:   info.version,
		}}
	case engine.ChangeUpdated:
		resp.Kind = &vmrev1.WatchRuntimesResponse_Runtime{Runtime: runtimeToProto(c.Runtime)}
		resp.Event = eventToProto(c.Event)
	case engine.ChangeUsage:
		resp.Kind = &vmrev1.WatchRuntimesResponse_Runtime{Runtime: runtimeToProto(c.Runtime)}
	case engine.ChangeRemoved:
		resp.Kind = &vmrev1.WatchRuntimesResponse_RemovedId{RemovedId: c.RemovedID}
	}
	return resp
}

func streamToProto(s string) vmrev1.OutputStream {
	switch s {
	case "stdout":
		return vmrev1.OutputStream_OUTPUT_STREAM_STDOUT
	case "stderr":
		return vmrev1.OutputStream_OUTPUT_STREAM_STDERR
	default:
		return vmrev1.OutputStream_OUTPUT_STREAM_UNSPECIFIED
	}
}

func linesToProto(lines []subprocess.Line) []*vmrev1.OutputLine {
	out := make([]*vmrev1.OutputLine, len(lines))
	for i := range lines {
		l := &lines[i]
		text, msg := string(l.Text), ""
		if bytes.Equal(l.Message, l.Text) {
			msg = text // a plain line: one string for both
		} else {
			msg = string(l.Message)
		}
		o := &vmrev1.OutputLine{
			Seq:         l.Seq,
			Time:        timestamp(l.Time),
			Stream:      streamToProto(l.Stream),
			Level:       l.Level.String(),
			LogLevel:    levelToProto(l.Level),
			Text:        text,
			Message:     msg,
			Logger:      string(l.Logger),
			Caller:      string(l.Caller),
			PluginLevel: string(l.LevelText),
			Format:      l.Format.String(),
			Dump:        string(l.Dump),
			Partial:     l.Partial,
			Panic:       l.Panic,
			Pid:         int64(l.Pid),
		}
		if !l.PluginTime.IsZero() {
			o.PluginTime = timestamppb.New(l.PluginTime)
		}
		if l.Fields != nil {
			// The bridge hands on only JSON objects; one that protobuf's
			// Struct cannot hold (a number out of its range) goes out as
			// text only.
			var f structpb.Struct
			if err := protojson.Unmarshal(l.Fields, &f); err == nil {
				o.Fields = &f
			}
		}
		out[i] = o
	}
	return out
}

var levelsToProto = map[zerolog.Level]vmrev1.LogLevel{
	zerolog.TraceLevel: vmrev1.LogLevel_LOG_LEVEL_TRACE,
	zerolog.DebugLevel: vmrev1.LogLevel_LOG_LEVEL_DEBUG,
	zerolog.InfoLevel:  vmrev1.LogLevel_LOG_LEVEL_INFO,
	zerolog.WarnLevel:  vmrev1.LogLevel_LOG_LEVEL_WARN,
	zerolog.ErrorLevel: vmrev1.LogLevel_LOG_LEVEL_ERROR,
	zerolog.FatalLevel: vmrev1.LogLevel_LOG_LEVEL_FATAL,
	zerolog.PanicLevel: vmrev1.LogLevel_LOG_LEVEL_PANIC,
}

func levelToProto(l zerolog.Level) vmrev1.LogLevel { return levelsToProto[l] }

// levelFromProto maps a requested minimum level; unspecified selects all.
func levelFromProto(l vmrev1.LogLevel) zerolog.Level {
	for zl, pl := range levelsToProto {
		if pl == l {
			return zl
		}
	}
	return zerolog.NoLevel
}

func streamFromProto(s vmrev1.OutputStream) string {
	switch s {
	case vmrev1.OutputStream_OUTPUT_STREAM_STDOUT:
		return subprocess.StreamStdout
	case vmrev1.OutputStream_OUTPUT_STREAM_STDERR:
		return subprocess.StreamStderr
	}
	return ""
}
