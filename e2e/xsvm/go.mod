module github.com/vmre/vmre/e2e/xsvm

go 1.26.8

require (
	connectrpc.com/connect v1.21.1
	github.com/vmre/vmre v0.0.0-00010101000000-000000000000
	golang.org/x/sys v0.49.0
)

require google.golang.org/protobuf v1.36.12 // indirect

replace github.com/vmre/vmre => ../..
