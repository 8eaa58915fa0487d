package harness

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/shellcmd"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// LoadPod reads a static Pod manifest strictly: a field that corev1.Pod does
// not know is an error, as it would be a manifest kubelet cannot honour.
func LoadPod(file string) (*corev1.Pod, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read static Pod manifest: %w", err)
	}
	return parsePod(file, data)
}

// parsePod decodes the manifest read from file, as LoadPod does.
func parsePod(file string, data []byte) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		return nil, fmt.Errorf("parse static Pod manifest %s: %w", file, err)
	}
	if pod.Kind != "Pod" || pod.APIVersion != "v1" {
		return nil, fmt.Errorf("static Pod manifest %s: apiVersion %q kind %q, want v1 Pod", file, pod.APIVersion, pod.Kind)
	}
	return &pod, nil
}

// bind is one volume mount: a folder of the host shown at a container path.
type bind struct {
	source, target string
	readOnly       bool
	file           bool
}

// podPlan is what kubelet would run for the Pod's etcd container.
type podPlan struct {
	container corev1.Container
	argv      []string
	env       []string
	workDir   string
	binds     []bind
	// rewrites lists the argument changes of loopback mode, for the log.
	rewrites []string
	// missing are mount paths this machine lacks; they appear only inside
	// the member's mount namespace.
	missing []string
}

// etcdContainer picks the container running etcd: the only one, or the one
// named etcd.
func etcdContainer(pod *corev1.Pod) (corev1.Container, error) {
	cs := pod.Spec.Containers
	if len(cs) == 1 {
		return cs[0], nil
	}
	for _, c := range cs {
		if c.Name == "etcd" {
			return c, nil
		}
	}
	return corev1.Container{}, fmt.Errorf("the Pod has %d containers and none is named etcd", len(cs))
}

// planPod builds the process kubelet would start: the container command as
// written, with only argv[0] "etcd" replaced by the etcd binary, followed by
// the container args; the container environment; and a bind per volume
// mount, its source found by hostFS (the host path's place on this machine).
func planPod(pod *corev1.Pod, etcdBin string, hostFS func(string) string) (*podPlan, error) {
	c, err := etcdContainer(pod)
	if err != nil {
		return nil, err
	}
	if len(c.Command) == 0 || c.Command[0] != "etcd" {
		return nil, fmt.Errorf("container %s: command %q does not start with etcd", c.Name, c.Command)
	}
	p := &podPlan{container: c, workDir: c.WorkingDir}
	p.argv = append([]string{etcdBin}, c.Command[1:]...)
	p.argv = append(p.argv, c.Args...)
	// A container starts with an almost empty environment, not ours: the
	// test's ETCD_* variables would otherwise reach etcd as settings.
	p.env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("container %s: env %s uses valueFrom, which a static Pod cannot resolve", c.Name, e.Name)
		}
		p.env = append(p.env, e.Name+"="+e.Value)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("container %s: volume mount %s names no volume", c.Name, vm.Name)
		}
		if v.HostPath == nil {
			return nil, fmt.Errorf("volume %s: only hostPath volumes are supported", v.Name)
		}
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			return nil, fmt.Errorf("volume mount %s: subPath is not supported", vm.Name)
		}
		if !path.IsAbs(vm.MountPath) || !path.IsAbs(v.HostPath.Path) {
			return nil, fmt.Errorf("volume %s: paths must be absolute (hostPath %q, mountPath %q)", v.Name, v.HostPath.Path, vm.MountPath)
		}
		source := hostFS(v.HostPath.Path)
		isFile, err := prepareHostPath(source, v.HostPath.Type)
		if err != nil {
			return nil, fmt.Errorf("volume %s (hostPath %s): %w", v.Name, v.HostPath.Path, err)
		}
		p.binds = append(p.binds, bind{source: source, target: path.Clean(vm.MountPath), readOnly: vm.ReadOnly, file: isFile})
	}
	return p, nil
}

// prepareHostPath checks or creates the host side of a hostPath volume the
// way kubelet does for its type, and reports whether it is a file.
func prepareHostPath(source string, typ *corev1.HostPathType) (bool, error) {
	t := corev1.HostPathUnset
	if typ != nil {
		t = *typ
	}
	fi, statErr := os.Stat(source)
	switch t {
	case corev1.HostPathDirectoryOrCreate, corev1.HostPathUnset:
		if statErr == nil {
			return !fi.IsDir(), nil
		}
		// kubelet makes DirectoryOrCreate folders 0755; the container
		// runtime does the same for an unset type.
		if err := os.MkdirAll(source, 0o755); err != nil {
			return false, fmt.Errorf("create: %w", err)
		}
		return false, nil
	case corev1.HostPathDirectory:
		if statErr != nil || !fi.IsDir() {
			return false, fmt.Errorf("type Directory but %s is not a folder: %v", source, statErr)
		}
		return false, nil
	case corev1.HostPathFileOrCreate:
		if statErr == nil {
			return true, nil
		}
		if err := os.MkdirAll(filepath.Dir(source), 0o755); err != nil {
			return false, fmt.Errorf("create parent: %w", err)
		}
		if err := os.WriteFile(source, nil, 0o644); err != nil {
			return false, fmt.Errorf("create: %w", err)
		}
		return true, nil
	case corev1.HostPathFile:
		if statErr != nil || fi.IsDir() {
			return false, fmt.Errorf("type File but %s is not a file: %v", source, statErr)
		}
		return true, nil
	}
	return false, fmt.Errorf("hostPath type %q is not supported", t)
}

// rewriteForLoopback is loopback mode's stand-in for the mount and network
// namespaces: container paths in the arguments become the host folders
// behind them, and loopback addresses in --listen-metrics-urls become the
// host's own address, so that the hosts' metrics ports do not collide.
func (p *podPlan) rewriteForLoopback(addr string) error {
	binds := slices.Clone(p.binds)
	// The longest mount path wins, as the innermost mount would.
	slices.SortFunc(binds, func(a, b bind) int { return len(b.target) - len(a.target) })
	for i, arg := range p.argv[1:] {
		name, value, hasValue := strings.Cut(arg, "=")
		if !hasValue {
			continue
		}
		newValue := value
		if name == "--listen-metrics-urls" {
			urls, err := loopbackToHost(value, addr)
			if err != nil {
				return err
			}
			newValue = urls
		}
		for _, b := range binds {
			if newValue == b.target || strings.HasPrefix(newValue, b.target+"/") {
				newValue = b.source + strings.TrimPrefix(newValue, b.target)
				break
			}
		}
		if newValue != value {
			p.argv[i+1] = name + "=" + newValue
			p.rewrites = append(p.rewrites, fmt.Sprintf("%s: %s -> %s", name, value, newValue))
		}
	}
	if p.workDir != "" {
		return errors.New("loopback fallback: a container working directory cannot be mapped")
	}
	return nil
}

// loopbackToHost replaces loopback hosts in a comma-separated URL list.
func loopbackToHost(list, addr string) (string, error) {
	parts := strings.Split(list, ",")
	for i, s := range parts {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("--listen-metrics-urls %q: %w", s, err)
		}
		if isLoopbackHost(u.Hostname()) {
			u.Host = net.JoinHostPort(addr, u.Port())
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ","), nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// mountScript is what runs in the private mount namespace before exec'ing
// etcd: each mount path appears where the manifest says. A mount path whose
// parent does not exist on this machine (/etc/kubernetes) is made inside an
// overlay over its nearest existing ancestor (/etc), whose writable layer
// is a tmpfs at stage, so nothing of the real filesystem changes.
func (p *podPlan) mountScript(stage string) (string, error) {
	var lines []string
	lines = append(lines, "set -e", "mount -t tmpfs -o mode=0700 e2e-stage "+shellcmd.Quote(stage))
	var overlays []string
	for _, b := range p.binds {
		if _, err := os.Lstat(b.target); err == nil {
			continue
		}
		p.missing = append(p.missing, b.target)
		anc := path.Dir(b.target)
		for {
			if _, err := os.Stat(anc); err == nil {
				break
			}
			anc = path.Dir(anc)
		}
		if anc == "/" {
			return "", fmt.Errorf("mount path %s needs a new top-level folder, which the harness does not make", b.target)
		}
		if strings.ContainsAny(anc, ",:\\") {
			return "", fmt.Errorf("mount path %s: folder %s cannot be an overlay layer", b.target, anc)
		}
		overlays = append(overlays, anc)
	}
	slices.Sort(overlays)
	overlays = slices.Compact(overlays)
	var done []string
	for i, anc := range overlays {
		if slices.ContainsFunc(done, func(d string) bool { return strings.HasPrefix(anc, d+"/") }) {
			continue // already writable inside an outer overlay
		}
		done = append(done, anc)
		upper, work := fmt.Sprintf("%s/o%d/upper", stage, i), fmt.Sprintf("%s/o%d/work", stage, i)
		lines = append(lines,
			"mkdir -p "+shellcmd.Quote(upper)+" "+shellcmd.Quote(work),
			"mount -t overlay e2e-overlay -o "+shellcmd.Quote("lowerdir="+anc+",upperdir="+upper+",workdir="+work)+" "+shellcmd.Quote(anc))
	}
	for _, b := range p.binds {
		if b.file {
			lines = append(lines, "mkdir -p "+shellcmd.Quote(path.Dir(b.target)), "[ -e "+shellcmd.Quote(b.target)+" ] || : > "+shellcmd.Quote(b.target))
		} else {
			lines = append(lines, "mkdir -p "+shellcmd.Quote(b.target))
		}
		lines = append(lines, "mount --bind "+shellcmd.Quote(b.source)+" "+shellcmd.Quote(b.target))
		if b.readOnly {
			lines = append(lines, "mount -o remount,bind,ro "+shellcmd.Quote(b.target))
		}
	}
	if p.workDir != "" {
		lines = append(lines, "cd "+shellcmd.Quote(p.workDir))
	}
	lines = append(lines, `exec "$@"`)
	return strings.Join(lines, "\n"), nil
}
