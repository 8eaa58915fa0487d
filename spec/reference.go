package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// The image reference grammar of github.com/distribution/reference (the
// one container runtimes parse with), written out here rather than pulled in
// for three regular expressions:
//
//	reference        := name [ ":" tag ] [ "@" digest ]
//	name             := [domain '/'] remote-name
//	domain           := host [':' port-number]
//	host             := domain-name | "[" IPv6 "]"
//	domain-name      := domain-component ['.' domain-component]*
//	domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//	port-number      := /[0-9]+/
//	remote-name      := path-component ['/' path-component]*
//	path-component   := alpha-numeric [separator alpha-numeric]*
//	alpha-numeric    := /[a-z0-9]+/
//	separator        := /[_.]|__|[-]+/
//	tag              := /[\w][\w.-]{0,127}/
//	digest           := algorithm ":" hex (at least 32 hex digits)
//
// A name is at most 255 characters.
const (
	refPathComponent = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	refDomainName    = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*`
	refDomain        = `(?:` + refDomainName + `|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
	refName          = `(?:` + refDomain + `/)?` + refPathComponent + `(?:/` + refPathComponent + `)*`
	refTag           = `[\w][\w.-]{0,127}`
	refDigest        = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	refMaxNameLength = 255
)

var (
	referenceRE = regexp.MustCompile(`^(` + refName + `)(?::(` + refTag + `))?(?:@(` + refDigest + `))?$`)
	nameRE      = regexp.MustCompile(`^` + refName + `$`)
	tagRE       = regexp.MustCompile(`^` + refTag + `$`)
)

// validateReference checks a whole image reference such as
// registry.k8s.io/etcd:3.6.8-0.
func validateReference(s string) error {
	m := referenceRE.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("is not an image reference such as %s/etcd:%s", DefaultImageRepository, DefaultEtcdVersion)
	}
	if len(m[1]) > refMaxNameLength {
		return fmt.Errorf("names an image longer than %d characters", refMaxNameLength)
	}
	return nil
}

// validateRepository checks that repo/etcd is an image name.
func validateRepository(repo string) error {
	name := repo + "/etcd"
	if !nameRE.MatchString(name) || strings.HasSuffix(repo, "/") {
		return fmt.Errorf("is not an image repository such as %s or registry.example.com:5000/mirror", DefaultImageRepository)
	}
	if len(name) > refMaxNameLength {
		return fmt.Errorf("makes an image name longer than %d characters", refMaxNameLength)
	}
	return nil
}

// validateTag checks an image tag.
func validateTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("is not an image tag (a letter, digit or '_', then up to 127 letters, digits, '_', '.' or '-'), such as %s", DefaultEtcdVersion)
	}
	return nil
}
