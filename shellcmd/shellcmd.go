// Package shellcmd writes the shell commands the tool prints for the user to
// run or runs through sh -c: words quoted for a POSIX shell, and the remote
// targets of ssh and scp, which spell an IPv6 address differently.
package shellcmd

import "strings"

// safe are the bytes that need no quoting anywhere in a word: none of them
// is special to a POSIX shell, in any position ('=' only in a command's
// first word, which Quote is not for).
const safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_+=:,./-"

// Quote returns s as one shell word that the shell reads back as exactly s:
// as it is when every byte is safe, else in single quotes.
func Quote(s string) string {
	if s != "" && strings.Trim(s, safe) == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes every word and joins them with spaces.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}

// SSHTarget is user@address as ssh takes it: the address bare, an IPv6 one
// too (ssh would look up "[2001:db8::1]" as a host name).
func SSHTarget(user, address string) string {
	return user + "@" + strings.TrimSuffix(strings.TrimPrefix(address, "["), "]")
}

// SCPTarget is the remote side of an scp, user@address:path, with an IPv6
// address (an IPv4-mapped one included) in brackets, else scp would split it
// at its first colon; "" as path is the remote user's home. In a shell
// command it is one word: Quote it.
func SCPTarget(user, address, path string) string {
	host := strings.TrimSuffix(strings.TrimPrefix(address, "["), "]")
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return user + "@" + host + ":" + path
}
