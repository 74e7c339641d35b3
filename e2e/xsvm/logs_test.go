package xsvm

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ava-labs/avalanchego/ids"
	vmpb "github.com/ava-labs/avalanchego/proto/pb/vm"
	"github.com/ava-labs/avalanchego/upgrade"
	"github.com/ava-labs/avalanchego/utils/crypto/bls"
	"github.com/ava-labs/avalanchego/utils/crypto/bls/signer/localsigner"
	vmrev1 "github.com/vmre/vmre/gen/vmre/v1"
	"github.com/vmre/vmre/gen/vmre/v1/vmrev1connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The line xsvm (rpcchainvm's VM server) logs when Initialize fails on a
// junk genesis, as avalanchego v1.14.0 writes it.
const (
	initFailedMessage = "failed to initialize vm"
	initFailedCaller  = "rpcchainvm/vm_server.go:253"
	initFailedError   = "failed to parse genesis bytes: unknown codec version"
)

// initializeRequest is a /vm.VM/Initialize request as a node sends it for
// chainID, valid up to its genesis, which is junk. The database and node
// addresses are never dialled: the genesis is parsed first.
func initializeRequest(t *testing.T, chainID ids.ID) *vmpb.InitializeRequest {
	t.Helper()
	signer, err := localsigner.New()
	if err != nil {
		t.Fatal(err)
	}
	at := timestamppb.New(upgrade.InitiallyActiveTime)
	other := ids.GenerateTestID()
	return &vmpb.InitializeRequest{
		NetworkId: 12345,
		SubnetId:  other[:],
		ChainId:   chainID[:],
		NodeId:    ids.GenerateTestNodeID().Bytes(),
		PublicKey: bls.PublicKeyToCompressedBytes(signer.PublicKey()),
		NetworkUpgrades: &vmpb.NetworkUpgrades{
			ApricotPhase_1Time: at, ApricotPhase_2Time: at, ApricotPhase_3Time: at, ApricotPhase_4Time: at,
			ApricotPhase_5Time: at, ApricotPhasePre_6Time: at, ApricotPhase_6Time: at, ApricotPhasePost_6Time: at,
			BanffTime: at, CortinaTime: at, DurangoTime: at, EtnaTime: at, FortunaTime: at, GraniteTime: at,
			CortinaXChainStopVertexId: ids.Empty[:],
		},
		XChainId:     other[:],
		CChainId:     other[:],
		AvaxAssetId:  other[:],
		ChainDataDir: t.TempDir(),
		GenesisBytes: []byte("not a genesis"),
		DbServerAddr: "127.0.0.1:1",
		ServerAddr:   "127.0.0.1:1",
	}
}

// TestXSVMLogsAtTheirLevels: xsvm logs a failed Initialize through
// avalanchego's zap console encoder, with colour codes around the level
// (testdata/xsvm-initialize-stderr.log holds two such lines). vmre must
// report that line at its real level, error, with the message alone and
// the line's logger, caller, time and fields as typed fields, in the API's
// TailOutput and in vmre run's JSON log.
func TestXSVMLogsAtTheirLevels(t *testing.T) {
	t.Parallel()
	p, up := running(t, "")
	api := p.waitLog(t, `"api listening"`, func(l logLine) bool { return l.str("message") == "api listening" })

	conn, err := grpc.NewClient(up.str("addr"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chainID := ids.GenerateTestID()
	_, err = vmpb.NewVMClient(conn).Initialize(testContext(t), initializeRequest(t, chainID))
	if err == nil {
		t.Fatal("xsvm accepted a junk genesis")
	}
	t.Logf("Initialize: %v", err)

	client := vmrev1connect.NewRuntimeServiceClient(http.DefaultClient, "http://"+api.str("addr"))
	stream, err := client.TailOutput(testContext(t), &vmrev1.TailOutputRequest{Id: up.str("id"), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var got *vmrev1.OutputLine
	for got == nil && stream.Receive() {
		for _, l := range stream.Msg().GetLines() {
			if strings.Contains(l.GetText(), initFailedMessage) {
				got = l
				break
			}
		}
	}
	if got == nil {
		t.Fatalf("TailOutput ended without xsvm's %q line: %v", initFailedMessage, stream.Err())
	}
	t.Logf("TailOutput line: %v", got)
	if got.GetStream() != vmrev1.OutputStream_OUTPUT_STREAM_STDERR {
		t.Errorf("stream %v, want stderr", got.GetStream())
	}
	if got.GetLogLevel() != vmrev1.LogLevel_LOG_LEVEL_ERROR {
		t.Errorf("log_level %v, want error", got.GetLogLevel())
	}
	if got.GetMessage() != initFailedMessage {
		t.Errorf("message %q, want %q", got.GetMessage(), initFailedMessage)
	}
	if got.GetFormat() != "zap-console" {
		t.Errorf("format %q, want zap-console", got.GetFormat())
	}
	if want := chainID.String() + " Chain"; got.GetLogger() != want {
		t.Errorf("logger %q, want %q", got.GetLogger(), want)
	}
	if got.GetCaller() != initFailedCaller {
		t.Errorf("caller %q, want %q", got.GetCaller(), initFailedCaller)
	}
	if e := got.GetFields().GetFields()["error"].GetStringValue(); e != initFailedError {
		t.Errorf("fields %v, want error %q", got.GetFields(), initFailedError)
	}
	if pt := got.GetPluginTime(); pt == nil || pt.AsTime().Nanosecond()%1e6 != 0 || got.GetTime().AsTime().Sub(pt.AsTime()).Abs() > waitBound {
		// zap console times have milliseconds and no year: the year must
		// be completed (the same time, give or take the bound).
		t.Errorf("plugin_time %v, engine time %v", pt.AsTime(), got.GetTime().AsTime())
	}

	line := p.waitLog(t, "xsvm's "+initFailedMessage+" line in vmre's log", func(l logLine) bool {
		return l.fromXSVM() && strings.Contains(l.str("message"), initFailedMessage)
	})
	if line.str("level") != "error" || line.str("message") != initFailedMessage {
		t.Errorf("vmre's log has xsvm's line at level %q with message %q, want error and %q",
			line.str("level"), line.str("message"), initFailedMessage)
	}

}
