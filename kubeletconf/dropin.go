package kubeletconf

import (
	"strings"

	"github.com/etcd-staticpod/etcd-staticpod/spec"
)

// DropIn returns the systemd drop-in that replaces the packaged kubelet
// command line with one that reads only configPath. The empty ExecStart=
// clears the ExecStart of kubelet.service and of kubeadm's 10-kubeadm.conf,
// which sorts before 20-; without it systemd would refuse a second command
// for a simple service. Restart=always keeps etcd's manager running.
func DropIn(c *spec.Cluster, configPath string) []byte {
	var b strings.Builder
	b.WriteString("[Service]\n")
	b.WriteString("ExecStart=\n")
	b.WriteString("ExecStart=" + execWord(c.Kubelet.Path) + " " + execWord("--config="+configPath) + "\n")
	b.WriteString("Restart=always\n")
	return []byte(b.String())
}

// execWord writes one word of an ExecStart= line so systemd reads it back
// unchanged: "%" would start a unit specifier and "$" a variable, and blanks,
// quotes or backslashes need a quoted word. Plain paths, the usual case, come
// out as given.
func execWord(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\n\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
