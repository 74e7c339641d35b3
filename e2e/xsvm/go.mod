module github.com/vmre/vmre/e2e/xsvm

go 1.26.8

require (
	connectrpc.com/connect v1.21.1
	github.com/ava-labs/avalanchego v1.14.0
	github.com/vmre/vmre v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.49.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/DataDog/zstd v1.5.2 // indirect
	github.com/google/renameio/v2 v2.0.0 // indirect
	github.com/gorilla/rpc v1.2.0 // indirect
	github.com/mr-tron/base58 v1.2.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/supranational/blst v0.3.14 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/exp v0.0.0-20241215155358-4a5509556b9e // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	gonum.org/v1/gonum v0.17.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12
)

replace github.com/vmre/vmre => ../..
