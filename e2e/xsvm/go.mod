module github.com/vmre/vmre/e2e/xsvm

go 1.26.8

require golang.org/x/sys v0.37.0
