package deploy_test

import (
	"bytes"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"

	"github.com/vmre/vmre"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const kubernetesPath = "kubernetes/vmre.yaml"

// kubernetesObjects decodes every document of the manifest into its
// k8s.io/api type, refusing unknown and duplicate fields, so that a typo
// or a field of another API version fails here rather than in a cluster.
func kubernetesObjects(t *testing.T) (*appsv1.StatefulSet, *corev1.Service, *corev1.Secret) {
	t.Helper()
	data, err := os.ReadFile(kubernetesPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		sts    *appsv1.StatefulSet
		svc    *corev1.Service
		secret *corev1.Secret
	)
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s document %d: %v", kubernetesPath, i, err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 StatefulSet":
			sts = new(appsv1.StatefulSet)
			obj = sts
		case "v1 Service":
			svc = new(corev1.Service)
			obj = svc
		case "v1 Secret":
			secret = new(corev1.Secret)
			obj = secret
		default:
			t.Fatalf("%s document %d: unexpected %s %s", kubernetesPath, i, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s document %d (%s): %v", kubernetesPath, i, meta.Kind, err)
		}
	}
	if sts == nil || svc == nil || secret == nil {
		t.Fatalf("%s lacks a StatefulSet, Service or Secret", kubernetesPath)
	}
	return sts, svc, secret
}

func container(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// mountDir returns where c mounts volume.
func mountDir(t *testing.T, c *corev1.Container, volume string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	t.Fatalf("container %s does not mount %s", c.Name, volume)
	return ""
}

// volumeFor returns the pod volume mounted at the directory of file in c.
func volumeFor(t *testing.T, pod *corev1.PodSpec, c *corev1.Container, file string) *corev1.Volume {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(file) {
			for i := range pod.Volumes {
				if pod.Volumes[i].Name == m.Name {
					return &pod.Volumes[i]
				}
			}
		}
	}
	t.Fatalf("container %s mounts no volume at %s", c.Name, path.Dir(file))
	return nil
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func TestKubernetesManifest(t *testing.T) {
	t.Parallel()
	sts, svc, secret := kubernetesObjects(t)
	pod := &sts.Spec.Template.Spec

	// The kubelet sends SIGTERM, waits this long, then SIGKILLs.
	if g := pod.TerminationGracePeriodSeconds; g == nil || float64(*g) <= stopBound.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %v: the kubelet would SIGKILL vmre within its stop bound %v", g, stopBound)
	}
	if sts.Spec.ServiceName != svc.Name || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("the StatefulSet's serviceName %q is not the headless Service %q", sts.Spec.ServiceName, svc.Name)
	}
	for k, v := range sts.Spec.Selector.MatchLabels {
		if sts.Spec.Template.Labels[k] != v || svc.Spec.Selector[k] != v {
			t.Errorf("label %s=%s: selector, pod template and Service disagree", k, v)
		}
	}

	engine := container(t, pod, "vmre")
	args := engine.Args
	checkRunFlags(t, args)
	if !hasFlag(args, "attach") {
		t.Fatal("vmre does not run with --attach: the VM sidecar has nothing to attach to")
	}

	// The API port, which the probes ask.
	listen, _ := flagValue(args, "listen")
	_, portText, _ := strings.Cut(listen, ":")
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatalf("--listen %q: %v", listen, err)
	}
	if len(engine.Ports) != 1 || int(engine.Ports[0].ContainerPort) != port {
		t.Errorf("container port %v, vmre listens on %d", engine.Ports, port)
	}
	if svc.Spec.Ports[0].Port != int32(port) {
		t.Errorf("Service port %d, vmre listens on %d", svc.Spec.Ports[0].Port, port)
	}

	// The tokens: files of the Secret, which only their owner may read.
	for _, flag := range []string{"token-file", "attach-token-file"} {
		file, ok := flagValue(args, flag)
		if !ok {
			t.Errorf("vmre has no --%s", flag)
			continue
		}
		vol := volumeFor(t, pod, engine, file)
		if vol.Secret == nil || vol.Secret.SecretName != secret.Name {
			t.Errorf("--%s %s is not in Secret %s", flag, file, secret.Name)
			continue
		}
		if _, ok := secret.StringData[path.Base(file)]; !ok {
			t.Errorf("Secret %s has no key %s for --%s", secret.Name, path.Base(file), flag)
		}
		if m := vol.Secret.DefaultMode; m == nil || *m&0o077 != 0 {
			t.Errorf("Secret volume mode %v: vmre refuses token files others can read", m)
		}
	}
	if sc := pod.SecurityContext; sc != nil && sc.FSGroup != nil {
		t.Error("fsGroup makes the kubelet add group read to Secret files, which vmre refuses")
	}

	// The attach socket: on an emptyDir both containers mount, created
	// with mode 0600, so both run as the same user.
	attach, _ := flagValue(args, "attach-listen")
	socket, ok := strings.CutPrefix(attach, "unix:")
	if !ok {
		t.Fatalf("--attach-listen %q is not a unix socket", attach)
	}
	vol := volumeFor(t, pod, engine, socket)
	if vol.EmptyDir == nil {
		t.Errorf("the attach socket's volume %s is not an emptyDir", vol.Name)
	}
	var vm *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name != engine.Name {
			vm = &pod.Containers[i]
		}
	}
	if vm == nil {
		t.Fatal("no VM sidecar container")
	}
	if dir := mountDir(t, vm, vol.Name); dir != path.Dir(socket) {
		t.Errorf("the VM mounts the attach volume at %s, vmre's socket is in %s", dir, path.Dir(socket))
	}
	if e := env(vm, vmre.EngineAddressKey); e == nil || e.Value != "unix:"+socket {
		t.Errorf("the VM's %s is %v, want unix:%s", vmre.EngineAddressKey, e, socket)
	}
	// The name the VM attaches under, which the probes ask about.
	if e := env(vm, vmre.RuntimeNameKey); e == nil || e.Value != vm.Name {
		t.Errorf("the VM's %s is %v, want its container's name %q, which the probes ask about", vmre.RuntimeNameKey, e, vm.Name)
	}
	// The stand-in VM is vmre's own example VM, kept attached.
	if vm.Image == engine.Image {
		checkArgs(t, vm.Args)
		if !hasFlag(vm.Args, "keep-attached") {
			t.Error("the example VM does not keep itself attached: it would not survive a restart of vmre")
		}
	}
	attachToken, _ := flagValue(args, "attach-token-file")
	if e := env(vm, vmre.HandshakeTokenKey); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
		e.ValueFrom.SecretKeyRef.Name != secret.Name || e.ValueFrom.SecretKeyRef.Key != path.Base(attachToken) {
		t.Errorf("the VM's %s does not come from the Secret's %s", vmre.HandshakeTokenKey, path.Base(attachToken))
	}
	if user := func(c *corev1.Container) int64 {
		if c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil {
			t.Fatalf("container %s sets no runAsUser", c.Name)
		}
		return *c.SecurityContext.RunAsUser
	}; user(engine) != user(vm) {
		t.Errorf("vmre runs as %d, the VM as %d: the VM cannot open the 0600 socket", user(engine), user(vm))
	}

	// Every probe is a gRPC probe on vmre's API port: the engine ("") for
	// vmre's liveness, the VM's runtime name for the rest.
	type probe struct {
		where string
		p     *corev1.Probe
	}
	probes := []probe{
		{"vmre liveness", engine.LivenessProbe}, {"vmre readiness", engine.ReadinessProbe},
		{"vm startup", vm.StartupProbe}, {"vm liveness", vm.LivenessProbe},
	}
	for _, pr := range probes {
		if pr.p == nil || pr.p.GRPC == nil {
			t.Errorf("%s probe is not a gRPC probe", pr.where)
			continue
		}
		if int(pr.p.GRPC.Port) != port {
			t.Errorf("%s probe on port %d, vmre listens on %d", pr.where, pr.p.GRPC.Port, port)
		}
		service := ""
		if pr.p.GRPC.Service != nil {
			service = *pr.p.GRPC.Service
		}
		switch {
		case pr.where == "vmre liveness" && service != "":
			t.Errorf("vmre's liveness asks about %q, want the engine (\"\")", service)
		case pr.where != "vmre liveness" && service != vm.Name:
			t.Errorf("%s probe asks about %q, want the VM's runtime name %q", pr.where, service, vm.Name)
		}
		if pr.p.TimeoutSeconds >= pr.p.PeriodSeconds && pr.p.TimeoutSeconds > 0 {
			t.Errorf("%s probe: timeout %d s not below period %d s", pr.where, pr.p.TimeoutSeconds, pr.p.PeriodSeconds)
		}
	}
}
