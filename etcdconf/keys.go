package etcdconf

// kind is how etcd's config file types a setting, which is not always how
// its flag reads it: a flag's "5s" is a duration in nanoseconds in the
// file, and a comma-separated list flag is a YAML list.
type kind int

const (
	kindString   kind = iota // as given
	kindBool                 // true/false
	kindInt                  // a signed integer
	kindUint                 // an unsigned integer
	kindDuration             // a Go duration on the flag, integer nanoseconds in the file
	kindList                 // comma-separated on the flag, a list in the file
)

// block names where a key lives in the file: at the top, or inside one of
// the two transport security blocks.
type block int

const (
	top block = iota
	clientTLS
	peerTLS
)

// key is where and how a flag lands in the file.
type key struct {
	name  string
	block block
	kind  kind
}

// keys maps etcd v3.6's flag names to its config file's keys: the JSON
// names of embed.Config, of the file-only fields its loader translates
// (the URL lists, cors, host-whitelist, feature-gates) and of the two
// transport security blocks. A flag the file cannot express (discovery
// endpoints, socket options, CRL files, auto TLS) is not here and is
// refused rather than silently dropped, since etcd ignores unknown keys.
// TestKeysMatchEtcd checks every entry against etcd's own types.
var keys = map[string]key{
	// Member.
	"name":                          {"name", top, kindString},
	"data-dir":                      {"data-dir", top, kindString},
	"wal-dir":                       {"wal-dir", top, kindString},
	"snapshot-count":                {"snapshot-count", top, kindUint},
	"snapshot-catchup-entries":      {"snapshot-catchup-entries", top, kindUint},
	"max-snapshots":                 {"max-snapshots", top, kindUint},
	"max-wals":                      {"max-wals", top, kindUint},
	"heartbeat-interval":            {"heartbeat-interval", top, kindUint},
	"election-timeout":              {"election-timeout", top, kindUint},
	"initial-election-tick-advance": {"initial-election-tick-advance", top, kindBool},
	"backend-batch-interval":        {"backend-batch-interval", top, kindDuration},
	"backend-batch-limit":           {"backend-batch-limit", top, kindInt},
	"backend-bbolt-freelist-type":   {"backend-bbolt-freelist-type", top, kindString},
	"quota-backend-bytes":           {"quota-backend-bytes", top, kindInt},
	"max-txn-ops":                   {"max-txn-ops", top, kindUint},
	"max-request-bytes":             {"max-request-bytes", top, kindUint},
	"max-concurrent-streams":        {"max-concurrent-streams", top, kindUint},
	"max-learners":                  {"max-learners", top, kindInt},
	"unsafe-no-fsync":               {"unsafe-no-fsync", top, kindBool},
	"memory-mlock":                  {"memory-mlock", top, kindBool},
	"force-new-cluster":             {"force-new-cluster", top, kindBool},

	// URLs, comma-separated strings in the file too.
	"listen-peer-urls":            {"listen-peer-urls", top, kindString},
	"listen-client-urls":          {"listen-client-urls", top, kindString},
	"listen-client-http-urls":     {"listen-client-http-urls", top, kindString},
	"initial-advertise-peer-urls": {"initial-advertise-peer-urls", top, kindString},
	"advertise-client-urls":       {"advertise-client-urls", top, kindString},
	"listen-metrics-urls":         {"listen-metrics-urls", top, kindString},
	"cors":                        {"cors", top, kindString},
	"host-whitelist":              {"host-whitelist", top, kindString},

	// Clustering.
	"initial-cluster":           {"initial-cluster", top, kindString},
	"initial-cluster-state":     {"initial-cluster-state", top, kindString},
	"initial-cluster-token":     {"initial-cluster-token", top, kindString},
	"strict-reconfig-check":     {"strict-reconfig-check", top, kindBool},
	"pre-vote":                  {"pre-vote", top, kindBool},
	"auto-compaction-mode":      {"auto-compaction-mode", top, kindString},
	"auto-compaction-retention": {"auto-compaction-retention", top, kindString},
	"v2-deprecation":            {"v2-deprecation", top, kindString},
	"feature-gates":             {"feature-gates", top, kindString},

	// gRPC and requests.
	"grpc-keepalive-min-time":        {"grpc-keepalive-min-time", top, kindDuration},
	"grpc-keepalive-interval":        {"grpc-keepalive-interval", top, kindDuration},
	"grpc-keepalive-timeout":         {"grpc-keepalive-timeout", top, kindDuration},
	"enable-grpc-gateway":            {"enable-grpc-gateway", top, kindBool},
	"warning-apply-duration":         {"warning-apply-duration", top, kindDuration},
	"warning-unary-request-duration": {"warning-unary-request-duration", top, kindDuration},
	"watch-progress-notify-interval": {"watch-progress-notify-interval", top, kindDuration},

	// Maintenance and checks.
	"corrupt-check-time":                   {"corrupt-check-time", top, kindDuration},
	"compact-hash-check-time":              {"compact-hash-check-time", top, kindDuration},
	"compaction-batch-limit":               {"compaction-batch-limit", top, kindInt},
	"compaction-sleep-interval":            {"compaction-sleep-interval", top, kindDuration},
	"bootstrap-defrag-threshold-megabytes": {"bootstrap-defrag-threshold-megabytes", top, kindUint},
	"downgrade-check-time":                 {"downgrade-check-time", top, kindDuration},

	// Auth.
	"auth-token":     {"auth-token", top, kindString},
	"auth-token-ttl": {"auth-token-ttl", top, kindUint},
	"bcrypt-cost":    {"bcrypt-cost", top, kindUint},

	// Observability.
	"metrics":                           {"metrics", top, kindString},
	"enable-pprof":                      {"enable-pprof", top, kindBool},
	"logger":                            {"logger", top, kindString},
	"log-level":                         {"log-level", top, kindString},
	"log-format":                        {"log-format", top, kindString},
	"log-outputs":                       {"log-outputs", top, kindList},
	"enable-log-rotation":               {"enable-log-rotation", top, kindBool},
	"log-rotation-config-json":          {"log-rotation-config-json", top, kindString},
	"enable-distributed-tracing":        {"enable-distributed-tracing", top, kindBool},
	"distributed-tracing-address":       {"distributed-tracing-address", top, kindString},
	"distributed-tracing-service-name":  {"distributed-tracing-service-name", top, kindString},
	"distributed-tracing-instance-id":   {"distributed-tracing-instance-id", top, kindString},
	"distributed-tracing-sampling-rate": {"distributed-tracing-sampling-rate", top, kindInt},

	// TLS settings that are not per listener.
	"cipher-suites":   {"cipher-suites", top, kindList},
	"tls-min-version": {"tls-min-version", top, kindString},
	"tls-max-version": {"tls-max-version", top, kindString},

	// The client listeners' TLS.
	"cert-file":                    {"cert-file", clientTLS, kindString},
	"key-file":                     {"key-file", clientTLS, kindString},
	"client-cert-file":             {"client-cert-file", clientTLS, kindString},
	"client-key-file":              {"client-key-file", clientTLS, kindString},
	"client-cert-auth":             {"client-cert-auth", clientTLS, kindBool},
	"trusted-ca-file":              {"trusted-ca-file", clientTLS, kindString},
	"client-cert-allowed-hostname": {"allowed-hostname", clientTLS, kindList},

	// The peer listeners' TLS.
	"peer-cert-file":                    {"cert-file", peerTLS, kindString},
	"peer-key-file":                     {"key-file", peerTLS, kindString},
	"peer-client-cert-file":             {"client-cert-file", peerTLS, kindString},
	"peer-client-key-file":              {"client-key-file", peerTLS, kindString},
	"peer-client-cert-auth":             {"client-cert-auth", peerTLS, kindBool},
	"peer-trusted-ca-file":              {"trusted-ca-file", peerTLS, kindString},
	"peer-cert-allowed-cn":              {"allowed-cn", peerTLS, kindList},
	"peer-cert-allowed-hostname":        {"allowed-hostname", peerTLS, kindList},
	"peer-skip-client-san-verification": {"skip-client-san-verification", peerTLS, kindBool},
}
