package etcdtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/etcd-staticpod/etcd-staticpod/etcdops"
	"github.com/etcd-staticpod/etcd-staticpod/layout"
)

// unitStart is what a systemd member's etcd.service says about starting
// etcd: the binary of its ExecStart and where each credential comes from.
type unitStart struct {
	// Binary is ExecStart's first word as a host path (/usr/local/bin/etcd).
	Binary string
	// Credentials map LoadCredential='s names to their host paths.
	Credentials map[string]string
}

// readUnit reads the unit of a host folder.
func readUnit(bundle string) (*unitStart, error) {
	data, err := os.ReadFile(layout.OnHost(bundle, layout.EtcdUnit))
	if err != nil {
		return nil, err
	}
	u := &unitStart{Credentials: map[string]string{}}
	s := bufio.NewScanner(bytes.NewReader(data))
	for s.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(s.Text()), "=")
		if !ok {
			continue
		}
		switch key {
		case "ExecStart":
			u.Binary = strings.Fields(value)[0]
		case "LoadCredential":
			name, src, ok := strings.Cut(value, ":")
			if !ok {
				return nil, fmt.Errorf("%s: LoadCredential=%s: want NAME:PATH", layout.EtcdUnit, value)
			}
			u.Credentials[name] = src
		}
	}
	if u.Binary == "" {
		return nil, fmt.Errorf("%s of %s: no ExecStart=", layout.EtcdUnit, bundle)
	}
	return u, s.Err()
}

// binary is the etcd a systemd member runs: the one its unit's ExecStart
// names inside the host folder when the bundle carries it (--etcd-binary,
// or swapped in by an upgrade), else fallback. It is looked up at each
// start, as systemd does.
func (m *Member) binary() string {
	if !m.Systemd {
		return m.bin
	}
	u, err := readUnit(m.Bundle)
	if err != nil {
		return m.bin
	}
	p := layout.OnHost(m.Bundle, u.Binary)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	return m.bin
}

// configFile writes the member's etcd.conf.yml as this test runs it: the
// file's own settings, with the data folder in the test's, the
// certificates in the host folder, the keys where the unit's
// LoadCredential= takes them from (systemd hands them over under
// layout.EtcdCredentialsDir), and every URL through mapURL. It returns
// the path of the file etcd is started with (--config-file=).
func (m *Member) configFile(original []byte, tmp string, mapURL func(string) string) (string, error) {
	u, err := readUnit(m.Bundle)
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(original, &cfg); err != nil {
		return "", fmt.Errorf("%s of %s: %w", layout.EtcdConfig, m.Name, err)
	}
	var value func(key string, v any) any
	value = func(key string, v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				v[k] = value(k, x)
			}
			return v
		case []any:
			for i, x := range v {
				v[i] = value(key, x)
			}
			return v
		case string:
			switch {
			case key == "data-dir":
				return m.DataDir
			case strings.HasPrefix(v, layout.EtcdCredentialsDir+"/"):
				src, ok := u.Credentials[strings.TrimPrefix(v, layout.EtcdCredentialsDir+"/")]
				if !ok {
					return v
				}
				return layout.OnHost(m.Bundle, src)
			case strings.HasPrefix(v, "/"):
				if _, err := os.Stat(layout.OnHost(m.Bundle, v)); err == nil {
					return layout.OnHost(m.Bundle, v)
				}
				return v
			}
			return mapURL(v)
		}
		return v
	}
	cfg = value("", cfg).(map[string]any)
	if _, ok := cfg["listen-metrics-urls"]; !ok {
		cfg["listen-metrics-urls"] = m.MetricsURL
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	file := filepath.Join(tmp, "etcd.conf.yml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		return "", err
	}
	return file, nil
}

// Join starts the member of host folder DIR/NAME that `member add` wrote,
// from its manifest or etcd.conf.yml, beside the running members: their
// URLs in its files point at the ports they really serve on, its own peer
// and client URLs keep their ports (the member list was told them before it
// ran), and a loopback listener such as the metrics URL gets a free port.
// It does not wait: a learner is not ready until it is promoted. The
// member stops when the test ends.
func (c *Cluster) Join(tb testing.TB, name string) *Member {
	tb.Helper()
	bundle := filepath.Join(c.Dir, name)
	m, err := etcdops.ReadHost(bundle)
	if err != nil {
		tb.Fatal(err)
	}
	original, err := os.ReadFile(m.Path)
	if err != nil {
		tb.Fatal(err)
	}
	shared := map[string]string{}
	for _, o := range c.Members {
		for port, real := range map[int]string{2379: o.ClientURL, 2380: o.PeerURL} {
			u, err := url.Parse(real)
			if err != nil {
				tb.Fatal(err)
			}
			shared[net.JoinHostPort(u.Hostname(), strconv.Itoa(port))] = u.Host
		}
	}
	ports := newPorts(tb)
	// Its own peer and client URLs keep their ports: the member list
	// already holds them.
	mapURLs := urlMapper(shared, ports, func(host string) bool { return host == "127.0.0.1" || host == "::1" })
	mem := &Member{
		Name: name, Bundle: bundle, bin: EtcdBinary(tb),
		Systemd:   filepath.Base(m.Path) == filepath.Base(layout.EtcdConfig),
		ClientURL: m.ClientURLs[0], PeerURL: m.PeerURLs[0],
		DataDir: filepath.Join(tb.TempDir(), "data"),
		LogFile: filepath.Join(tb.TempDir(), name+".log"),
	}
	if v, ok := m.Flag("listen-metrics-urls"); ok {
		mem.MetricsURL = strings.Split(mapURLs(v), ",")[0]
	}
	if mem.Systemd {
		file, err := mem.configFile(original, tb.TempDir(), mapURLs)
		if err != nil {
			tb.Fatal(err)
		}
		mem.args = []string{"--config-file=" + file}
	} else {
		mem.args = mem.commandArgs(m.Command, mapURLs)
	}
	ports.release()
	// Run's cleanup logs the members' last lines, this one's included.
	tb.Cleanup(mem.stop)
	if err := mem.start(); err != nil {
		tb.Fatal(err)
	}
	c.Members = append(c.Members, mem)
	return mem
}

// Supervise restarts every member whose etcd ends, as systemd restarts a
// unit (after a pause, like RestartSec=), with the binary its unit names
// at that moment, until the test stops the member. It returns a folder
// holding NAME.pid for each member's running etcd: a test's stand-in for
// `systemctl restart etcd` sends that process SIGTERM.
func (c *Cluster) Supervise(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, m := range c.Members {
		m.mu.Lock()
		m.pidFile = filepath.Join(dir, m.Name+".pid")
		p := m.proc
		var err error
		if p != nil {
			err = os.WriteFile(m.pidFile, []byte(strconv.Itoa(p.Pid())+"\n"), 0o600)
		}
		m.mu.Unlock()
		if err != nil {
			tb.Fatal(err)
		}
		if p != nil {
			go m.supervise(p)
		}
	}
	return dir
}

// restartPause is how long a supervised member stays down.
const restartPause = 200 * time.Millisecond

func (m *Member) supervise(p *Process) {
	for {
		<-p.Done()
		time.Sleep(restartPause)
		m.mu.Lock()
		if m.stopped || m.proc != p {
			m.mu.Unlock()
			return
		}
		err := m.startLocked()
		p = m.proc
		m.mu.Unlock()
		if err != nil {
			return
		}
	}
}
