package upgrade

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is an etcd release: 3.6.16. The image tag's build suffix
// (3.6.16-0) and a leading v are not part of it.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Compare orders versions: -1, 0 or +1.
func (v Version) Compare(o Version) int {
	for _, d := range []int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
	}
	return 0
}

// ParseVersion reads 3.6.16, v3.6.16 or an image tag such as 3.6.16-0.
func ParseVersion(s string) (Version, error) {
	core, _, _ := strings.Cut(strings.TrimPrefix(s, "v"), "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%q is not an etcd version such as 3.6.16 or 3.6.16-0", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p != strconv.Itoa(v) {
			return Version{}, fmt.Errorf("%q is not an etcd version such as 3.6.16 or 3.6.16-0", s)
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}, nil
}

// ImageVersion is the version in an image reference's tag:
// registry.k8s.io/etcd:3.6.16-0 is 3.6.16.
func ImageVersion(image string) (Version, error) {
	name := image[strings.LastIndex(image, "/")+1:]
	if strings.Contains(name, "@") {
		return Version{}, fmt.Errorf("image %q: a digest says no version; use a tag such as :3.6.16-0", image)
	}
	_, tag, ok := strings.Cut(name, ":")
	if !ok || tag == "" {
		return Version{}, fmt.Errorf("image %q has no tag; use a tag such as :3.6.16-0", image)
	}
	v, err := ParseVersion(tag)
	if err != nil {
		return Version{}, fmt.Errorf("image %q: %w", image, err)
	}
	return v, nil
}

// CheckStep says whether a member running from can go to to in one
// upgrade: never down, never to another major version, and at most one
// minor version up (etcd supports upgrades from the previous minor only).
func CheckStep(from, to Version) error {
	switch {
	case to.Compare(from) < 0:
		return fmt.Errorf("downgrade from %s to %s is not supported", from, to)
	case to.Major != from.Major:
		return fmt.Errorf("upgrade from %s to %s changes the major version, which etcd does not support", from, to)
	case to.Minor > from.Minor+1:
		return fmt.Errorf("upgrade from %s to %s skips a minor version: upgrade to the latest %d.%d.x first", from, to, from.Major, from.Minor+1)
	}
	return nil
}
