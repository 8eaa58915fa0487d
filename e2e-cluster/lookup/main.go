// Command lookup resolves each name given through the Pod's resolver
// (/etc/resolv.conf, as kubelet writes it for the Pod's DNS policy) and prints
// "NAME ADDRESS..." per name. It exits 1 when a name does not resolve. The
// StatefulSet stage runs it in a Pod to show that cluster DNS answers for
// Service names; its image has nothing but this binary.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lookup NAME...")
		os.Exit(2)
	}
	rc := 0
	for _, name := range os.Args[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "lookup: %s: %v\n", name, err)
			rc = 1
			continue
		}
		fmt.Printf("%s %s\n", name, strings.Join(addrs, " "))
	}
	os.Exit(rc)
}
