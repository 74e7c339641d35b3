package config_test

import (
	"fmt"

	"github.com/vmre/vmre/config"
)

func ExampleParse() {
	old, _ := config.Parse("/etc/vmre/vmre.yaml", []byte(`
runtimes:
  - {name: subnet-a, path: /opt/vms/subnet-evm, handshake_timeout: 5s}
  - {name: subnet-b, path: /opt/vms/subnet-evm}
`))
	next, _ := config.Parse("/etc/vmre/vmre.yaml", []byte(`
runtimes:
  - {name: subnet-a, path: /opt/vms/subnet-evm, handshake_timeout: 5000ms}
  - {name: subnet-c, path: vms/xsvm, restart: {policy: always}}
`))
	plan := config.Diff(old, next)
	fmt.Println("start:", plan.Start[0].Name, plan.Start[0].Spec.Path, plan.Start[0].Spec.Restart.Mode)
	fmt.Println("stop:", plan.Stop, "keep:", plan.Keep)

	_, err := config.Parse("/etc/vmre/vmre.yaml", []byte(`
runtimes:
  - {name: subnet-a, path: /opt/vms/subnet-evm, restart: {policy: sometimes}}
`))
	fmt.Println(err)
	// Output:
	// start: subnet-c /etc/vmre/vms/xsvm always
	// stop: [subnet-b] keep: [subnet-a]
	// invalid config: /etc/vmre/vmre.yaml: runtimes[0].restart.policy: "sometimes" is not one of never, on-failure, always
}
