//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// TestDoctorFailsForeignVMAddr: a plugin that announces an address it
// does not serve (here `vmre handshake --vm-addr ADDR`, which exits after
// its handshake) completes the handshake, as with avalanchego (the engine
// does not dial back during it), but the doctor fails and says why: the
// address refuses connections, or it is another process's (this test's
// listener), which is then not probed.
func TestDoctorFailsForeignVMAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range []struct {
		name, addr, wantReport, wantErr string
	}{
		{"refuses connections", "127.0.0.1:1", "grpc.health.v1     not probed", "nothing listens on 127.0.0.1:1 (connections to it are refused)"},
		{"another process's", ln.Addr().String(), "grpc.health.v1     not probed", fmt.Sprintf("is listened on by pid %d, not by the plugin", os.Getpid())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := vmreCmd(t, "doctor", "--log-level", "warn", "--", os.Args[0], "handshake", "--vm-addr", tt.addr)
			if code != exitFailure {
				t.Errorf("doctor exit code %d, want %d", code, exitFailure)
			}
			for _, want := range []string{"vm address         " + tt.addr, tt.wantReport, "result             FAIL"} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(errOut, "vm address is not the plugin's: ") || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr lacks the reason %q:\n%s", tt.wantErr, errOut)
			}
		})
	}
}
