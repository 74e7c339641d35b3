// Package deploy holds no code: its tests check the deployment files beside
// it (kubernetes/, nomad/, systemd/) against vmre itself, the flags its
// command accepts and the stop bound its defaults give, so that a file that
// drifts from vmre fails CI. It is a module of its own so that k8s.io/api
// and the HCL parser stay out of vmre's go.mod. docs/deploy.md explains
// the files.
package deploy
