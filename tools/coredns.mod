module github.com/etcd-staticpod/etcd-staticpod/tools/coredns

go 1.26

require github.com/coredns/coredns v1.14.2
