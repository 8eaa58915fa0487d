package certs

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Differences lists how an existing leaf departs from what the spec asks for:
// another CA, another subject, other SANs or usages, another key type, a key
// that does not belong to it, or an expired certificate. None means keep it.
func Differences(cert *x509.Certificate, key crypto.Signer, a *Authority, r Request, algorithm string, now time.Time) []string {
	var diffs []string
	if err := cert.CheckSignatureFrom(a.Cert); err != nil {
		diffs = append(diffs, fmt.Sprintf("it is not signed by the CA %q in use", a.Cert.Subject.CommonName))
	}
	if want := r.Profile.CommonName(r.Host); cert.Subject.CommonName != want {
		diffs = append(diffs, fmt.Sprintf("subject CN is %q, want %q", cert.Subject.CommonName, want))
	}
	var wantDNS []string
	var wantIPs []net.IP
	if r.Profile.AltNames != nil {
		alt := r.Profile.AltNames(r.Host)
		wantDNS, wantIPs = alt.DNSNames, alt.IPs
	}
	if d := setDiff("DNS SANs", sorted(cert.DNSNames), sorted(wantDNS)); d != "" {
		diffs = append(diffs, d)
	}
	if d := setDiff("IP SANs", ipStrings(cert.IPAddresses), ipStrings(wantIPs)); d != "" {
		diffs = append(diffs, d)
	}
	if !slices.Equal(cert.ExtKeyUsage, r.Profile.Usages) {
		diffs = append(diffs, "extended key usages differ from the profile")
	}
	if got := KeyAlgorithm(cert.PublicKey); got != algorithm {
		diffs = append(diffs, fmt.Sprintf("key is %s, want %s", got, algorithm))
	}
	if KeyMatches(cert, key) != nil {
		diffs = append(diffs, "the key file does not belong to the certificate")
	}
	if now.After(cert.NotAfter) {
		diffs = append(diffs, fmt.Sprintf("it expired on %s", cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	return diffs
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return sorted(out)
}

func setDiff(what string, got, want []string) string {
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing "+strings.Join(missing, ","))
	}
	if len(extra) > 0 {
		parts = append(parts, "unexpected "+strings.Join(extra, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return what + ": " + strings.Join(parts, "; ")
}
