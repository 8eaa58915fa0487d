package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops/etcdtest"
)

// StatefulSetPod is what a StatefulSet's Pod needs from its cluster: the
// objects it reads (the ConfigMaps and Secrets its container and volumes
// name) and the DNS names the cluster's DNS would answer, mapped to the
// lab's host addresses.
type StatefulSetPod struct {
	StatefulSet *appsv1.StatefulSet
	ConfigMaps  []*corev1.ConfigMap
	Secrets     []*corev1.Secret
	// Ordinal is the Pod's: its name is StatefulSet-Ordinal.
	Ordinal int
	// Hosts maps DNS names to addresses: the Pod's /etc/hosts.
	Hosts map[string]string
}

// StartStatefulSetPod runs the etcd container of a StatefulSet's Pod as
// kubelet would, on lab host h: in the host's network namespace, in a
// private mount namespace where the Secret volumes and a fresh data folder
// for each volume claim template appear at their mount paths, and /etc/hosts
// holds p.Hosts. The environment is resolved as kubelet resolves it
// (downward API metadata.name, configMapKeyRef, secretKeyRef, $(VAR) in
// values), and so are $(VAR) references in the command and args. The
// process ends with the test. It returns the process and its log file.
func (l *Lab) StartStatefulSetPod(t interface {
	TempDir() string
	Cleanup(func())
}, tools Tools, h Host, p StatefulSetPod) (*etcdtest.Process, string, error) {
	if l.mode != ModeNamespace {
		return nil, "", fmt.Errorf("a StatefulSet Pod needs namespace mode: its members all listen on 0.0.0.0")
	}
	hn, err := l.host(h.Name)
	if err != nil {
		return nil, "", err
	}
	sts := p.StatefulSet
	podName := fmt.Sprintf("%s-%d", sts.Name, p.Ordinal)
	pod := &corev1.Pod{Spec: sts.Spec.Template.Spec}
	c, err := etcdContainer(pod)
	if err != nil {
		return nil, "", err
	}
	if len(c.Command) == 0 || c.Command[0] != "etcd" {
		return nil, "", fmt.Errorf("container %s: command %q does not start with etcd", c.Name, c.Command)
	}
	etcdBin, err := tools.EtcdFor(c.Image)
	if err != nil {
		return nil, "", err
	}
	env, vars, err := p.environment(c, podName)
	if err != nil {
		return nil, "", err
	}
	plan := &podPlan{container: c, env: env}
	plan.argv = []string{etcdBin}
	for _, a := range append(c.Command[1:], c.Args...) {
		plan.argv = append(plan.argv, expand(a, vars))
	}

	dir := t.TempDir()
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	claims := map[string]bool{}
	for _, vc := range sts.Spec.VolumeClaimTemplates {
		claims[vc.Name] = true
	}
	for _, vm := range c.VolumeMounts {
		source := filepath.Join(dir, "volumes", vm.Name)
		switch v, ok := volumes[vm.Name]; {
		case ok && v.Secret != nil:
			if err := p.writeSecret(v.Secret, source); err != nil {
				return nil, "", err
			}
		case claims[vm.Name]:
			// A new PersistentVolume: an empty folder.
			if err := os.MkdirAll(source, 0o700); err != nil {
				return nil, "", err
			}
		default:
			return nil, "", fmt.Errorf("volume mount %s: only Secret volumes and volume claim templates are supported", vm.Name)
		}
		plan.binds = append(plan.binds, bind{source: source, target: path.Clean(vm.MountPath), readOnly: vm.ReadOnly})
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte(p.hostsFile()), 0o644); err != nil {
		return nil, "", err
	}
	plan.binds = append(plan.binds, bind{source: hosts, target: "/etc/hosts", file: true})
	stage := filepath.Join(dir, "stage")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return nil, "", err
	}
	script, err := plan.mountScript(stage)
	if err != nil {
		return nil, "", err
	}
	args := []string{"netns", "exec", hn.ns.Name, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "etcd-" + podName}
	cmd := exec.Command("ip", append(args, plan.argv...)...)
	cmd.Env = plan.env
	logPath := filepath.Join(dir, "etcd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	proc, err := etcdtest.StartProcess(cmd, logf)
	if err != nil {
		return nil, "", fmt.Errorf("pod %s: start etcd: %w", podName, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		proc.Kill(ctx)
	})
	return proc, logPath, nil
}

// environment resolves the container's env in order, as kubelet does.
func (p StatefulSetPod) environment(c corev1.Container, podName string) ([]string, map[string]string, error) {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	vars := map[string]string{}
	for _, e := range c.Env {
		value := expand(e.Value, vars)
		if s := e.ValueFrom; s != nil {
			switch {
			case s.FieldRef != nil && s.FieldRef.FieldPath == "metadata.name":
				value = podName
			case s.FieldRef != nil && s.FieldRef.FieldPath == "metadata.namespace":
				value = p.StatefulSet.Namespace
			case s.ConfigMapKeyRef != nil:
				cm := p.configMap(s.ConfigMapKeyRef.Name)
				v, ok := "", false
				if cm != nil {
					v, ok = cm.Data[s.ConfigMapKeyRef.Key]
				}
				if !ok {
					return nil, nil, fmt.Errorf("env %s: no key %s in ConfigMap %s", e.Name, s.ConfigMapKeyRef.Key, s.ConfigMapKeyRef.Name)
				}
				value = v
			case s.SecretKeyRef != nil:
				sec := p.secret(s.SecretKeyRef.Name)
				if sec == nil || sec.Data[s.SecretKeyRef.Key] == nil {
					return nil, nil, fmt.Errorf("env %s: no key %s in Secret %s", e.Name, s.SecretKeyRef.Key, s.SecretKeyRef.Name)
				}
				value = string(sec.Data[s.SecretKeyRef.Key])
			default:
				return nil, nil, fmt.Errorf("env %s: this valueFrom is not supported", e.Name)
			}
		}
		vars[e.Name] = value
		env = append(env, e.Name+"="+value)
	}
	return env, vars, nil
}

func (p StatefulSetPod) configMap(name string) *corev1.ConfigMap {
	for _, cm := range p.ConfigMaps {
		if cm.Name == name && cm.Namespace == p.StatefulSet.Namespace {
			return cm
		}
	}
	return nil
}

func (p StatefulSetPod) secret(name string) *corev1.Secret {
	for _, s := range p.Secrets {
		if s.Name == name && s.Namespace == p.StatefulSet.Namespace {
			return s
		}
	}
	return nil
}

// writeSecret writes a Secret volume: one file per key, with the volume's
// mode, as kubelet's atomic writer shows them.
func (p StatefulSetPod) writeSecret(v *corev1.SecretVolumeSource, dir string) error {
	s := p.secret(v.SecretName)
	if s == nil {
		return fmt.Errorf("volume: no Secret %s", v.SecretName)
	}
	mode := os.FileMode(0o644)
	if v.DefaultMode != nil {
		mode = os.FileMode(*v.DefaultMode)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for key, data := range s.Data {
		f := filepath.Join(dir, key)
		if err := os.WriteFile(f, data, mode); err != nil {
			return err
		}
		if err := os.Chmod(f, mode); err != nil {
			return err
		}
	}
	return nil
}

func (p StatefulSetPod) hostsFile() string {
	var names []string
	for n := range p.Hosts {
		names = append(names, n)
	}
	sort.Strings(names)
	lines := []string{"127.0.0.1 localhost", "::1 localhost"}
	for _, n := range names {
		lines = append(lines, p.Hosts[n]+" "+n)
	}
	return strings.Join(lines, "\n") + "\n"
}

// expand replaces $(VAR) with the value of a variable defined so far and
// $$ with $, leaving unknown references as written: kubelet's rules for
// command, args and env values.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteByte(s[i])
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
