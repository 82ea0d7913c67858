package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/onairhq/onair/internal/clientip"
)

// The deployment files are checked by reading them (neither Docker nor
// Kubernetes runs here) against the binary: what they set must be settings
// onair has and accepts, their ports and probes must be the ones onair listens
// on and answers, every role must be reachable through the edge, and the edge
// must be the only proxy whose X-Forwarded-For the nodes believe.

const deployDir = "../../deploy"

// onairProbePaths are the paths onair answers for health checks.
var onairProbePaths = map[string]bool{"/healthz": true, "/readyz": true}

// Stand-ins for what the files leave to the operator or the platform.
var (
	plausibleSecrets = map[string]string{
		"ONAIR_CHANNEL":     "main:deploy-test-stream-key",
		"ONAIR_SECRET":      "deploy-test-secret-0123456789abcdef",
		"ONAIR_ADMIN_TOKEN": "deploy-test-admin-token-0123456789",
	}
	plausiblePodIP = "10.244.1.7"
)

// deployNode is one onair process of a deployment, as its environment sets it.
type deployNode struct {
	name  string
	env   map[string]string
	cfg   Config
	roles roles
}

// loadDeployNode reads a node's settings from env as onair serve would.
func loadDeployNode(t *testing.T, name string, env map[string]string) (deployNode, bool) {
	t.Helper()
	known := map[string]bool{}
	defaults := defaultConfig()
	for _, f := range defaults.fields() {
		known[envName(f.key)] = true
	}
	for k := range env {
		if strings.HasPrefix(k, "ONAIR_") && !known[k] {
			t.Errorf("%s sets %s, which is not a setting (typo?)", name, k)
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := loadConfig(fs, nil, func(k string) string { return env[k] })
	if err != nil {
		t.Errorf("onair refuses the settings of %s: %v", name, err)
		return deployNode{}, false
	}
	r, _ := parseRoles(cfg.Roles) // loadConfig validated it
	return deployNode{name: name, env: env, cfg: cfg, roles: r}, true
}

func (n deployNode) httpPort() int { return addrPort(n.cfg.HTTPAddr) }
func (n deployNode) rtmpPort() int { return addrPort(n.cfg.RTMPAddr) }

// trusts reports whether the node believes X-Forwarded-For from a.
func (n deployNode) trusts(a netip.Addr) bool {
	nets, _ := clientip.ParseNetworks(n.cfg.TrustedProxies) // loadConfig validated them
	return clientip.NewResolver(nets).Trusts(a)
}

// addrPort is the port of "host:port" or ":port", 0 if there is none.
func addrPort(hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// urlHostPort is a URL's host and port, the scheme's default port if it names none.
func urlHostPort(s string) (string, int, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", 0, fmt.Errorf("%q is not a URL with a host", s)
	}
	port, _ := strconv.Atoi(u.Port())
	if port == 0 {
		port = map[string]int{"http": 80, "https": 443, "redis": 6379, "rediss": 6379}[u.Scheme]
	}
	return u.Hostname(), port, nil
}

// secretEnv reports whether an environment variable holds a secret outright.
func secretEnv(k string) bool {
	for key := range secretKeys {
		if envName(key) == k {
			return true
		}
	}
	return false
}

// isOnairImage tells onair's image from nginx's and Redis's.
func isOnairImage(image string) bool {
	name := image[strings.LastIndexByte(image, '/')+1:]
	name, _, _ = strings.Cut(name, ":")
	return name == "onair"
}

// The edge templates.

var (
	templateVar    = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)
	upstreamServer = regexp.MustCompile(`^server\s+(\S+?)(\s+[a-z_]+(=\S+)?)*$`)
)

// templateVars lists the ${VARIABLES} a template needs.
func templateVars(tmpl string) []string {
	var out []string
	for _, m := range templateVar.FindAllStringSubmatch(tmpl, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// renderTemplate substitutes a template's ${VARIABLES} as the nginx image's
// envsubst does, and nothing else (nginx's own $variables stay).
func renderTemplate(tmpl string, vars map[string]string) (string, error) {
	var missing []string
	out := templateVar.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// upstreamHosts reads an EDGE_*_SERVERS value ("server a:8080; server b:8080;")
// into its hosts and ports.
func upstreamHosts(v string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(v, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		m := upstreamServer.FindStringSubmatch(item)
		if m == nil || addrPort(m[1]) == 0 {
			return nil, fmt.Errorf("%q is not an nginx server line with host:port", item)
		}
		out = append(out, m[1])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q names no server", v)
	}
	return out, nil
}

// listenPort is the port of an nginx listen address ("80", "127.0.0.1:80").
func listenPort(s string) int {
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	return addrPort(s)
}

// edgeUpstream is what an EDGE_*_SERVERS variable of the cluster template names.
type edgeUpstream struct{ role role }

// servedBy reports whether a node with these roles can be one of its servers:
// the origins' upstream also gets the pages and the API.
func (u edgeUpstream) servedBy(r roles) bool {
	return r.has(u.role) && (u.role != roleOrigin || r.has(roleWeb))
}

var edgeUpstreams = map[string]edgeUpstream{"EDGE_ORIGIN_SERVERS": {roleOrigin}, "EDGE_CHAT_SERVERS": {roleChat}}

// servedPaths are the exact locations a template answers itself.
func servedPaths(tmpl string) map[string]bool {
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*location\s*=\s*(\S+)\s*\{`).FindAllStringSubmatch(tmpl, -1) {
		out[m[1]] = true
	}
	return out
}

// checkNginx runs nginx -t on a rendered edge configuration inside a minimal
// nginx.conf, as e2e/cdn_test.go runs it. Server names are resolved by nginx,
// so upstream hosts must be given as addresses. Without nginx it checks nothing.
func checkNginx(t *testing.T, what, conf string) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Logf("nginx is not installed: %s not checked with nginx -t", what)
		return
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "edge.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    include %[1]s/edge.conf;
}
`, dir)
	if os.Getuid() == 0 {
		main = "user root;\n" + main
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-t", "-p", dir, "-c", path).CombinedOutput(); err != nil {
		t.Errorf("nginx rejects %s: %v\n%s", what, err, out)
	}
}

// checkEdgeTemplate renders a template with an edge's environment and runs
// nginx -t on it. Upstream hosts become 127.0.0.1 (nginx resolves names when it
// loads its configuration), the listen address a loopback port and the cache a
// temporary directory.
func checkEdgeTemplate(t *testing.T, what, tmpl string, env map[string]string) {
	t.Helper()
	vars := map[string]string{}
	for _, name := range templateVars(tmpl) {
		v, ok := env[name]
		if !ok {
			t.Errorf("%s: the template needs %s, which the edge does not set", what, name)
			continue
		}
		vars[name] = v
		if strings.HasSuffix(name, "_SERVERS") {
			hosts, err := upstreamHosts(v)
			if err != nil {
				t.Errorf("%s: %s: %v", what, name, err)
				continue
			}
			for _, h := range hosts {
				v = strings.ReplaceAll(v, h, net.JoinHostPort("127.0.0.1", strconv.Itoa(addrPort(h))))
			}
			vars[name] = v
		}
	}
	if _, ok := vars["ONAIR_ORIGIN"]; ok {
		vars["ONAIR_ORIGIN"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(addrPort(vars["ONAIR_ORIGIN"])))
	}
	if _, ok := vars["EDGE_LISTEN"]; ok {
		vars["EDGE_LISTEN"] = "127.0.0.1:18080"
	}
	if _, ok := vars["EDGE_CACHE_DIR"]; ok {
		vars["EDGE_CACHE_DIR"] = filepath.Join(t.TempDir(), "cache")
	}
	conf, err := renderTemplate(tmpl, vars)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	checkNginx(t, what, conf)
}

// hlsLocation is what a template does in its HLS (and recordings) location block, less
// where it proxies to and the Host it sends.
func hlsLocation(tmpl string) []string {
	_, block, ok := strings.Cut(tmpl, "location ~ ^/(hls|vod)/ {")
	if !ok {
		return nil
	}
	block, _, _ = strings.Cut(block, "\n    }")
	var out []string
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "proxy_pass ") || strings.HasPrefix(l, "proxy_set_header Host ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// Both edge templates render into configurations nginx accepts, and the one for
// several nodes caches HLS exactly as the one for a single onair does (that one
// is what the e2e tests run against a real origin).
func TestEdgeTemplates(t *testing.T) {
	single, err := os.ReadFile(filepath.Join(deployDir, "nginx/onair-edge.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := os.ReadFile(filepath.Join(deployDir, "nginx/onair-edge-cluster.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	// The variables e2e/cdn_test.go and e2e/edge_clientip_test.go substitute.
	if got, want := templateVars(string(single)), []string{"EDGE_CACHE_DIR", "EDGE_PURGE_FROM", "ONAIR_ORIGIN", "EDGE_LISTEN"}; !slices.Equal(got, want) {
		t.Errorf("onair-edge.conf.template needs %v; the e2e tests render it with %v", got, want)
	}
	checkEdgeTemplate(t, "onair-edge.conf.template", string(single), map[string]string{
		"ONAIR_ORIGIN": "onair:8080", "EDGE_LISTEN": "80", "EDGE_CACHE_DIR": "/var/cache/nginx/onair", "EDGE_PURGE_FROM": "172.30.80.2/32",
	})
	checkEdgeTemplate(t, "onair-edge-cluster.conf.template", string(cluster), map[string]string{
		"EDGE_ORIGIN_SERVERS": "server ingest-a:8080; server ingest-b:8080;", "EDGE_CHAT_SERVERS": "server chat-a:8080;",
		"EDGE_LISTEN": "80", "EDGE_CACHE_DIR": "/var/cache/nginx/onair", "EDGE_PURGE_FROM": "172.30.80.16/29",
	})
	a, b := hlsLocation(string(single)), hlsLocation(string(cluster))
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("the HLS location differs between the templates:\nonair-edge.conf.template:\n  %s\nonair-edge-cluster.conf.template:\n  %s",
			strings.Join(a, "\n  "), strings.Join(b, "\n  "))
	}
}

// The compose stack.

// composeFile is the part of deploy/docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet  string `yaml:"subnet"`
				IPRange string `yaml:"ip_range"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Environment map[string]string `yaml:"environment"`
	EnvFile     yaml.Node         `yaml:"env_file"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Tmpfs       yaml.Node         `yaml:"tmpfs"`
	Networks    yaml.Node         `yaml:"networks"`
	DependsOn   yaml.Node         `yaml:"depends_on"`
	Healthcheck *struct {
		Test    yaml.Node `yaml:"test"`
		Disable bool      `yaml:"disable"`
	} `yaml:"healthcheck"`
}

// healthcheck is the service's health check command, nil if it has none.
func (s composeService) healthcheck() []string {
	if s.Healthcheck == nil || s.Healthcheck.Disable {
		return nil
	}
	return nodeStrings(s.Healthcheck.Test)
}

// nodeStrings reads a node that may be one string or a list of them.
func nodeStrings(n yaml.Node) []string {
	var one string
	if n.Decode(&one) == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var list []string
	n.Decode(&list)
	return list
}

// addressOn returns a service's fixed address on a network, if it has one.
func addressOn(n yaml.Node, network string) (netip.Addr, bool) {
	var m map[string]struct {
		IPv4 string `yaml:"ipv4_address"`
	}
	if n.Decode(&m) != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(m[network].IPv4)
	return a, err == nil
}

// dependsOn maps the services a service waits for to the condition it waits for.
func dependsOn(n yaml.Node) map[string]string {
	out := map[string]string{}
	var list []string
	if n.Decode(&list) == nil {
		for _, s := range list {
			out[s] = "service_started"
		}
		return out
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	n.Decode(&m)
	for s, d := range m {
		out[s] = cmp.Or(d.Condition, "service_started")
	}
	return out
}

// composePort is one published port: "HOST:CONTAINER", "IP:HOST:CONTAINER" or
// "CONTAINER", each maybe with "/tcp".
type composePort struct{ host, container int }

func parseComposePort(s string) (composePort, error) {
	s, _, _ = strings.Cut(s, "/")
	parts := strings.Split(s, ":")
	c, err := strconv.Atoi(parts[len(parts)-1])
	if err != nil {
		return composePort{}, fmt.Errorf("port %q: %v", s, err)
	}
	p := composePort{container: c}
	if len(parts) > 1 {
		if p.host, err = strconv.Atoi(parts[len(parts)-2]); err != nil {
			return composePort{}, fmt.Errorf("port %q: %v", s, err)
		}
	}
	return p, nil
}

var composeVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate expands compose's ${VAR:-default} forms as compose would with
// nothing set in its environment; a variable without a default is an error (the
// stack would need it from whoever runs it).
func interpolate(s string) (string, error) {
	var err error
	out := composeVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := composeVar.FindStringSubmatch(m)
		if sub[2] == ":-" || sub[2] == "-" {
			return sub[3]
		}
		err = fmt.Errorf("%s in %q has no default", m, s)
		return ""
	})
	return out, err
}

// interpolateEnv interpolates every value of a service's environment.
func interpolateEnv(t *testing.T, service string, env map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range env {
		var err error
		if out[k], err = interpolate(v); err != nil {
			t.Errorf("%s: %s: %v", service, k, err)
		}
	}
	return out
}

// composeStack is deploy/docker-compose.yml as the test reads it.
type composeStack struct {
	cf       composeFile
	subnet   netip.Prefix
	ipRange  netip.Prefix          // where Docker picks addresses of its own (none: the subnet)
	gateway  netip.Addr            // Docker's, the address of clients of published ports
	addrs    map[string]netip.Addr // the services' fixed addresses
	nodes    map[string]deployNode // the onair services
	edge     string                // the nginx service
	edgeEnv  map[string]string
	edgePort int
}

// The network the services share.
const composeNetwork = "onair"

// The compose stack (deploy/docker-compose.yml): onair nodes by role behind the
// nginx edge, checked against the binary and against each other.
func TestComposeStack(t *testing.T) {
	s := readCompose(t)
	s.checkServices(t)
	for name, n := range s.nodes {
		s.checkNode(t, name, n)
	}
	s.checkEdge(t)
	s.checkPurges(t)
}

func readCompose(t *testing.T) *composeStack {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	s := &composeStack{addrs: map[string]netip.Addr{}, nodes: map[string]deployNode{}}
	if err := yaml.Unmarshal(raw, &s.cf); err != nil {
		t.Fatalf("deploy/docker-compose.yml: %v", err)
	}

	// Fixed addresses in the subnet, apart from each other and from the
	// addresses Docker hands out.
	cfgs := s.cf.Networks[composeNetwork].IPAM.Config
	if len(cfgs) == 0 {
		t.Fatalf("the %s network has no subnet", composeNetwork)
	}
	if s.subnet, err = netip.ParsePrefix(cfgs[0].Subnet); err != nil {
		t.Fatalf("the %s network's subnet: %v", composeNetwork, err)
	}
	s.gateway = s.subnet.Addr().Next()
	s.ipRange = s.subnet
	if cfgs[0].IPRange != "" {
		if s.ipRange, err = netip.ParsePrefix(cfgs[0].IPRange); err != nil {
			t.Fatalf("the %s network's ip_range: %v", composeNetwork, err)
		}
	}
	owner := map[netip.Addr]string{}
	for name, svc := range s.cf.Services {
		a, ok := addressOn(svc.Networks, composeNetwork)
		if !ok {
			continue
		}
		s.addrs[name] = a
		if !s.subnet.Contains(a) || a == s.gateway {
			t.Errorf("%s's address %s is not a free address of the subnet %s", name, a, s.subnet)
		}
		if s.ipRange.Contains(a) {
			t.Errorf("%s's address %s is in the range Docker hands out (%s), where another container may get it first", name, a, s.ipRange)
		}
		if other, dup := owner[a]; dup {
			t.Errorf("%s and %s both have the address %s", name, other, a)
		}
		owner[a] = name
	}

	// The onair nodes, as onair reads their settings. Their shared secrets come
	// from the env file every node names, for which the test stands in.
	var envFiles []string
	for name, svc := range s.cf.Services {
		if !isOnairImage(svc.Image) {
			continue
		}
		files := nodeStrings(svc.EnvFile)
		if len(files) == 0 {
			t.Errorf("%s takes no env_file: where do the channels, secret and admin token every node shares come from?", name)
		} else if envFiles == nil {
			envFiles = files
		} else if !slices.Equal(files, envFiles) {
			t.Errorf("%s takes env_file %v, other nodes %v: every node needs the same channels, keys, secret and admin token", name, files, envFiles)
		}
		env := maps.Clone(plausibleSecrets)
		maps.Copy(env, interpolateEnv(t, name, svc.Environment))
		if n, ok := loadDeployNode(t, name, env); ok {
			s.nodes[name] = n
		}
	}
	if len(s.nodes) < 2 {
		t.Fatalf("the compose stack has %d onair nodes that onair accepts; the scale-out topology has several", len(s.nodes))
	}

	for name, svc := range s.cf.Services {
		if strings.HasPrefix(svc.Image, "nginx") {
			if s.edge != "" {
				t.Fatalf("two nginx services, %s and %s; the test knows one edge", s.edge, name)
			}
			s.edge = name
		}
	}
	if s.edge == "" {
		t.Fatal("the compose stack has no nginx edge")
	}
	if _, ok := s.addrs[s.edge]; !ok {
		t.Fatalf("the edge has no fixed address on the %s network, so the nodes cannot name it as their proxy", composeNetwork)
	}
	s.edgeEnv = interpolateEnv(t, s.edge, s.cf.Services[s.edge].Environment)
	s.edgePort = listenPort(s.edgeEnv["EDGE_LISTEN"])
	return s
}

// checkServices: every service has a health check, publishes a host port no
// other does, waits only for services there are, and holds no secret.
func (s *composeStack) checkServices(t *testing.T) {
	hostPorts := map[int]string{}
	for name, svc := range s.cf.Services {
		if len(svc.healthcheck()) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
		for k, v := range svc.Environment {
			if secretEnv(k) || strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") || (strings.HasPrefix(k, "ONAIR_") && urlHasPassword(v)) {
				t.Errorf("%s holds a secret in the compose file (%s=%s…): pass it from the env file or a mounted config file", name, k, v[:min(len(v), 3)])
			}
		}
		for _, p := range svc.Ports {
			cp, err := parseComposePort(p)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if other, dup := hostPorts[cp.host]; dup && cp.host != 0 {
				t.Errorf("%s and %s both publish host port %d", name, other, cp.host)
			}
			hostPorts[cp.host] = name
		}
		for dep := range dependsOn(svc.DependsOn) {
			if _, ok := s.cf.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is no service", name, dep)
			}
		}
	}
	all := roles{}
	for _, n := range s.nodes {
		maps.Copy(all, n.roles)
	}
	for _, r := range allRoles {
		if !all[r] {
			t.Errorf("no node has the role %s", r)
		}
	}
}

// checkNode: a node's ports, its health check, the services it names, and whom
// it trusts.
func (s *composeStack) checkNode(t *testing.T, name string, n deployNode) {
	svc := s.cf.Services[name]
	rtmpPublished := false
	for _, p := range svc.Ports {
		cp, _ := parseComposePort(p)
		switch {
		case n.roles.has(roleIngest) && cp.container == n.rtmpPort():
			rtmpPublished = true
		case cp.container == n.httpPort():
			t.Errorf("%s publishes its HTTP port %d: viewers must come through the edge, the one proxy it trusts and the cache", name, cp.container)
		default:
			t.Errorf("%s publishes container port %d, where it does not listen (http-addr %s, rtmp-addr %s, roles %s)", name, cp.container, n.cfg.HTTPAddr, n.cfg.RTMPAddr, n.roles)
		}
	}
	if n.roles.has(roleIngest) && !rtmpPublished {
		t.Errorf("%s is an ingest node but does not publish its RTMP port %d", name, n.rtmpPort())
	}

	if test := svc.healthcheck(); len(test) < 3 || len(test) > 4 || !slices.Equal(test[:3], []string{"CMD", "onair", "healthcheck"}) {
		t.Errorf("%s's healthcheck is %q; the image has no curl: use [\"CMD\", \"onair\", \"healthcheck\"]", name, test)
	} else {
		target := healthcheckURL(n.cfg.HTTPAddr)
		if len(test) == 4 {
			target = test[3]
		}
		if u, err := url.Parse(target); err != nil || !onairProbePaths[u.Path] || addrPort(u.Host) != n.httpPort() {
			t.Errorf("%s's healthcheck asks %s; onair answers /healthz and /readyz on port %d", name, target, n.httpPort())
		}
	}

	if n.roles.has(roleIngest) {
		host, port, err := urlHostPort(n.cfg.NodeAddr)
		if err != nil || !s.names(host, name) || port != n.httpPort() {
			t.Errorf("%s's ONAIR_NODE_ADDR is %q; the other nodes reach its HTTP at http://%s:%d", name, n.cfg.NodeAddr, name, n.httpPort())
		}
	}

	// One Redis for all, the stack's, healthy before the node starts.
	for other, o := range s.nodes {
		if o.cfg.RedisURL != n.cfg.RedisURL {
			t.Errorf("%s uses Redis %q, %s %q", name, n.cfg.RedisURL, other, o.cfg.RedisURL)
		}
	}
	if host, _, err := urlHostPort(n.cfg.RedisURL); err != nil {
		t.Errorf("%s has no ONAIR_REDIS_URL: nodes find each other's channels and share chat through Redis", name)
	} else if redis, ok := s.cf.Services[host]; !ok || !strings.HasPrefix(redis.Image, "redis") {
		t.Errorf("%s's Redis %s is not the stack's redis service", name, n.cfg.RedisURL)
	} else if dependsOn(svc.DependsOn)[host] != "service_healthy" {
		t.Errorf("%s does not wait for %s to be healthy", name, host)
	}

	// Takedowns come from moderation (ingest) and the admin API (web).
	if n.roles.has(roleIngest) || n.roles.has(roleWeb) {
		purges := n.cfg.edgePurgeURLs()
		if len(purges) == 0 {
			t.Errorf("%s takes broadcasts down but purges no edge (ONAIR_EDGE_PURGE)", name)
		}
		for _, u := range purges {
			if host, port, err := urlHostPort(u); err != nil || !s.names(host, s.edge) || port != s.edgePort {
				t.Errorf("%s purges %s; the edge is http://%s:%d", name, u, s.edge, s.edgePort)
			}
		}
	}

	if a := s.addrs[s.edge]; !n.trusts(a) {
		t.Errorf("the edge %s is not in %s's ONAIR_TRUSTED_PROXIES %v: behind it every viewer is one IP", a, name, n.cfg.TrustedProxies)
	}
	if n.trusts(s.gateway) {
		t.Errorf("%s's ONAIR_TRUSTED_PROXIES %v covers Docker's gateway %s: any client of a published port could claim any address", name, n.cfg.TrustedProxies, s.gateway)
	}
	for other, a := range s.addrs {
		if other != s.edge && n.trusts(a) {
			t.Errorf("%s's ONAIR_TRUSTED_PROXIES %v covers %s (%s), which is not the edge", name, n.cfg.TrustedProxies, other, a)
		}
	}
	// Nor any address a container may get later.
	nets, _ := clientip.ParseNetworks(n.cfg.TrustedProxies)
	for _, p := range nets {
		if p.Overlaps(s.subnet) && p != netip.PrefixFrom(s.addrs[s.edge], 32) {
			t.Errorf("%s's ONAIR_TRUSTED_PROXIES has %s; on the stack's network it should hold the edge's address alone (%s/32)", name, p, s.addrs[s.edge])
		}
	}
}

// names reports whether host names the service or its fixed address.
func (s *composeStack) names(host, service string) bool {
	a, ok := s.addrs[service]
	return host == service || (ok && host == a.String())
}

// checkEdge: the edge's template, where it sends each path, its port and
// health check.
func (s *composeStack) checkEdge(t *testing.T) {
	edge := s.cf.Services[s.edge]
	var tmplPath string
	for _, v := range edge.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		if strings.HasPrefix(dst, "/etc/nginx/templates/") && strings.HasSuffix(dst, ".template") {
			tmplPath = src
		}
	}
	if !strings.HasPrefix(tmplPath, "./nginx/") {
		t.Fatalf("the edge mounts no template of deploy/nginx into /etc/nginx/templates (volumes %v)", edge.Volumes)
	}
	raw, err := os.ReadFile(filepath.Join(deployDir, tmplPath))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := string(raw)
	checkEdgeTemplate(t, "the compose edge", tmpl, s.edgeEnv)
	if !slices.Contains(nodeStrings(edge.Tmpfs), "/etc/nginx/conf.d") && !slices.ContainsFunc(edge.Volumes, func(v string) bool { return strings.Contains(v, ":/etc/nginx/conf.d") }) {
		t.Error("the edge keeps the image's conf.d/default.conf, whose server answers requests for localhost before the template's")
	}
	published := false
	for _, p := range edge.Ports {
		cp, _ := parseComposePort(p)
		published = published || cp.container == s.edgePort
	}
	if !published {
		t.Errorf("the edge does not publish its port %d (EDGE_LISTEN) for viewers", s.edgePort)
	}
	served := servedPaths(tmpl)
	var probe string
	for _, a := range edge.healthcheck() {
		if strings.HasPrefix(a, "http://") {
			probe = a
		}
	}
	if u, err := url.Parse(probe); probe == "" || err != nil || !served[u.Path] || addrPort(u.Host) != s.edgePort {
		t.Errorf("the edge's healthcheck asks %q; the template answers %v itself on port %d", probe, slices.Sorted(maps.Keys(served)), s.edgePort)
	}

	if _, ok := s.edgeEnv["ONAIR_ORIGIN"]; ok {
		t.Error("the edge uses the single-origin template (ONAIR_ORIGIN); the stack has several nodes")
	}
	waits := dependsOn(edge.DependsOn)
	for v, want := range edgeUpstreams {
		hosts, err := upstreamHosts(s.edgeEnv[v])
		if err != nil {
			t.Errorf("the edge's %s: %v", v, err)
			continue
		}
		listed := map[string]bool{}
		for _, h := range hosts {
			host, _, _ := net.SplitHostPort(h)
			n, ok := s.nodes[host]
			listed[host] = true
			switch {
			case !ok:
				t.Errorf("the edge's %s names %s, which is no onair node", v, host)
			case !want.servedBy(n.roles):
				t.Errorf("the edge's %s names %s, whose roles are %s", v, host, n.roles)
			case addrPort(h) != n.httpPort():
				t.Errorf("the edge's %s names %s, which listens on %d", v, h, n.httpPort())
			case waits[host] != "service_healthy":
				t.Errorf("the edge does not wait for %s to be healthy, and nginx resolves its name at start", host)
			}
		}
		for name, n := range s.nodes {
			if n.roles.has(want.role) && !listed[name] {
				t.Errorf("%s has the role %s but the edge's %s does not name it", name, want.role, v)
			}
		}
	}
}

// checkPurges: the edge takes purges from exactly the nodes that send them.
func (s *composeStack) checkPurges(t *testing.T) {
	v := s.edgeEnv["EDGE_PURGE_FROM"]
	from, err := netip.ParsePrefix(v)
	if a, aerr := netip.ParseAddr(v); aerr == nil {
		from, err = a.Prefix(a.BitLen())
	}
	if err != nil {
		t.Fatalf("the edge's EDGE_PURGE_FROM %q: %v", v, err)
	}
	for name, n := range s.nodes {
		if len(n.cfg.edgePurgeURLs()) == 0 {
			continue
		}
		if a, ok := s.addrs[name]; !ok {
			t.Errorf("%s purges the edge but has no fixed address for EDGE_PURGE_FROM to name", name)
		} else if !from.Contains(a) {
			t.Errorf("%s purges the edge from %s, outside EDGE_PURGE_FROM %s: its purges would do nothing", name, a, from)
		}
	}
	for name, a := range s.addrs {
		if n, ok := s.nodes[name]; (!ok || len(n.cfg.edgePurgeURLs()) == 0) && from.Contains(a) {
			t.Errorf("EDGE_PURGE_FROM %s covers %s (%s), which does not purge", from, name, a)
		}
	}
	if from.Contains(s.gateway) {
		t.Errorf("EDGE_PURGE_FROM %s covers Docker's gateway %s, the address of every client of a published port", from, s.gateway)
	}
	if from.Overlaps(s.ipRange) {
		t.Errorf("EDGE_PURGE_FROM %s overlaps the addresses Docker hands out (%s): any container may get one", from, s.ipRange)
	}
}

// Kubernetes.

// k8sObject is the part of a Kubernetes manifest the test reads.
type k8sObject struct {
	file     string
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		// Service
		Type                  string           `yaml:"type"`
		ClusterIP             string           `yaml:"clusterIP"`
		ExternalTrafficPolicy string           `yaml:"externalTrafficPolicy"`
		Ports                 []k8sServicePort `yaml:"ports"`
		// Service (a map), workloads and PodDisruptionBudget ({matchLabels})
		Selector yaml.Node `yaml:"selector"`
		// Deployment, StatefulSet
		ServiceName string          `yaml:"serviceName"`
		Template    *k8sPodTemplate `yaml:"template"`
		// NetworkPolicy
		PodSelector *k8sLabelSelector `yaml:"podSelector"`
		Ingress     []struct {
			From []struct {
				PodSelector       *k8sLabelSelector `yaml:"podSelector"`
				NamespaceSelector *k8sLabelSelector `yaml:"namespaceSelector"`
				IPBlock           *yaml.Node        `yaml:"ipBlock"`
			} `yaml:"from"`
			Ports []struct {
				Port yaml.Node `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
	} `yaml:"spec"`
}

type k8sLabelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

// matches reports whether the selector selects pods with these labels (only
// matchLabels is understood; an expression makes it match nothing here).
func (s *k8sLabelSelector) matches(labels map[string]string) bool {
	if s == nil || len(s.MatchExpressions) > 0 {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type k8sServicePort struct {
	Name       string    `yaml:"name"`
	Port       int       `yaml:"port"`
	TargetPort yaml.Node `yaml:"targetPort"`
}

type k8sPodTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []k8sContainer `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			EmptyDir *yaml.Node `yaml:"emptyDir"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name  string             `yaml:"name"`
	Image string             `yaml:"image"`
	Ports []k8sContainerPort `yaml:"ports"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
	VolumeMounts []k8sVolumeMount `yaml:"volumeMounts"`
}

type k8sContainerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type k8sVolumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
}

// has reports whether the container declares port p.
func (c k8sContainer) has(p int) bool {
	return slices.ContainsFunc(c.Ports, func(cp k8sContainerPort) bool { return cp.ContainerPort == p })
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	TCPSocket *struct {
		Port yaml.Node `yaml:"port"`
	} `yaml:"tcpSocket"`
}

// port resolves a port given by number or by a container port's name (0: neither).
func (c k8sContainer) port(n yaml.Node) int {
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	return 0
}

var k8sRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// environment resolves a container's env as the kubelet does: $(VAR) names a
// variable set earlier in the list. Values from the platform and from Secrets
// get stand-ins; the Secrets used are returned by variable.
func (c k8sContainer) environment() (map[string]string, map[string]string, error) {
	env, secrets := map[string]string{}, map[string]string{}
	var errs []string
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
			v = k8sRef.ReplaceAllStringFunc(v, func(m string) string {
				if m == "$$" {
					return "$"
				}
				name := m[2 : len(m)-1]
				val, ok := env[name]
				if !ok {
					errs = append(errs, fmt.Sprintf("%s refers to %s, which is not set before it (the kubelet would leave it as it is)", e.Name, m))
				}
				return val
			})
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			v = plausiblePodIP
		case e.ValueFrom.SecretKeyRef != nil:
			v = plausibleSecrets[e.ValueFrom.SecretKeyRef.Key]
			if v == "" {
				errs = append(errs, fmt.Sprintf("%s comes from the Secret's key %s; README.md's Secret has %v", e.Name, e.ValueFrom.SecretKeyRef.Key, slices.Sorted(maps.Keys(plausibleSecrets))))
			}
			secrets[e.Name] = e.ValueFrom.SecretKeyRef.Name
		default:
			errs = append(errs, fmt.Sprintf("%s: the test knows no stand-in for this valueFrom", e.Name))
		}
		env[e.Name] = v
	}
	if len(errs) > 0 {
		return env, secrets, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return env, secrets, nil
}

// selects reports whether a Service's selector selects pods with these labels.
func (o *k8sObject) selects(labels map[string]string) bool {
	var sel map[string]string
	if o.Spec.Selector.Decode(&sel) != nil || len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// matchSelector is the {matchLabels} selector of a workload or a PodDisruptionBudget.
func (o *k8sObject) matchSelector() *k8sLabelSelector {
	var sel k8sLabelSelector
	if o.Spec.Selector.Decode(&sel) != nil {
		return nil
	}
	return &sel
}

func (o *k8sObject) podLabels() map[string]string { return o.Spec.Template.Metadata.Labels }

func (o *k8sObject) String() string { return o.Kind + " " + o.Metadata.Name + " (" + o.file + ")" }

// k8sNode is an onair container of a workload, as onair reads its settings.
type k8sNode struct {
	deployNode
	w *k8sObject
	c k8sContainer
}

// k8sTarget is where a Service port sends its connections: a container port of
// a workload's pods.
type k8sTarget struct {
	w    *k8sObject
	c    k8sContainer
	port int
}

// k8sManifests are the documents of deploy/k8s/*.yaml as the test reads them.
type k8sManifests struct {
	byKind    map[string][]*k8sObject
	workloads []*k8sObject // those with a pod template
	services  map[string]*k8sObject
	nodes     []k8sNode

	edge     *k8sObject // the nginx workload
	edgeC    k8sContainer
	edgeEnv  map[string]string
	edgePort int
	podNet   netip.Prefix // the pod network, as EDGE_PURGE_FROM names it
}

// The Kubernetes manifests (deploy/k8s): the same topology as the compose stack,
// checked against the binary and against each other.
func TestKubernetesManifests(t *testing.T) {
	m := readManifests(t)
	m.checkWiring(t)
	m.checkContainers(t)
	m.readNodes(t)
	m.checkEdge(t)
	for _, n := range m.nodes {
		m.checkNode(t, n)
	}
	m.checkRoles(t)
}

func readManifests(t *testing.T) *k8sManifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	m := &k8sManifests{byKind: map[string][]*k8sObject{}, services: map[string]*k8sObject{}}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		for {
			o := &k8sObject{file: filepath.Base(f)}
			if err := dec.Decode(o); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" {
				continue // an empty document
			}
			m.byKind[o.Kind] = append(m.byKind[o.Kind], o)
			if o.Spec.Template != nil {
				m.workloads = append(m.workloads, o)
			}
			if o.Kind == "Service" {
				m.services[o.Metadata.Name] = o
			}
		}
	}
	return m
}

// targets is where the Service named host sends connections to its port.
func (m *k8sManifests) targets(host string, port int) []k8sTarget {
	svc, ok := m.services[host]
	if !ok {
		return nil
	}
	var out []k8sTarget
	for _, sp := range svc.Spec.Ports {
		if sp.Port != port {
			continue
		}
		tp := sp.TargetPort
		if tp.Value == "" {
			tp = yaml.Node{Kind: yaml.ScalarNode, Value: strconv.Itoa(sp.Port)}
		}
		for _, w := range m.workloads {
			if !svc.selects(w.podLabels()) {
				continue
			}
			for _, c := range w.Spec.Template.Spec.Containers {
				if p := c.port(tp); p != 0 && c.has(p) {
					out = append(out, k8sTarget{w, c, p})
				}
			}
		}
	}
	return out
}

// selectsSome reports whether some workload's pods have labels sel matches.
func (m *k8sManifests) selectsSome(sel *k8sLabelSelector) bool {
	return slices.ContainsFunc(m.workloads, func(w *k8sObject) bool { return sel.matches(w.podLabels()) })
}

// checkWiring: every Service reaches container ports of pods it selects, and
// every selector of a workload, a PodDisruptionBudget or a NetworkPolicy
// selects pods there are.
func (m *k8sManifests) checkWiring(t *testing.T) {
	for _, svc := range m.byKind["Service"] {
		var sel map[string]string
		if svc.Spec.Selector.Decode(&sel) != nil || len(sel) == 0 {
			t.Errorf("%s selects no pods", svc)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if len(m.targets(svc.Metadata.Name, sp.Port)) == 0 {
				t.Errorf("%s port %d (target %q) reaches no container port of the pods it selects (%v)", svc, sp.Port, sp.TargetPort.Value, sel)
			}
		}
		if (svc.Spec.Type == "LoadBalancer" || svc.Spec.Type == "NodePort") && svc.Spec.ExternalTrafficPolicy != "Local" {
			t.Errorf("%s (%s) has externalTrafficPolicy %q: with Cluster its clients arrive from node addresses, and onair limits and bans by address", svc, svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
		}
	}
	for _, w := range m.workloads {
		if sel := w.matchSelector(); sel == nil || !sel.matches(w.podLabels()) {
			t.Errorf("%s: its selector does not select its own pods", w)
		}
		if w.Kind == "StatefulSet" {
			svc, ok := m.services[w.Spec.ServiceName]
			if !ok || svc.Spec.ClusterIP != "None" || !svc.selects(w.podLabels()) {
				t.Errorf("%s: serviceName %q is not a headless Service selecting its pods", w, w.Spec.ServiceName)
			}
		}
	}
	for _, pdb := range m.byKind["PodDisruptionBudget"] {
		if !m.selectsSome(pdb.matchSelector()) {
			t.Errorf("%s selects no workload's pods", pdb)
		}
	}
	for _, np := range m.byKind["NetworkPolicy"] {
		if !m.selectsSome(np.Spec.PodSelector) {
			t.Errorf("%s selects no workload's pods", np)
		}
		for _, rule := range np.Spec.Ingress {
			for _, from := range rule.From {
				if from.PodSelector != nil && from.NamespaceSelector == nil && !m.selectsSome(from.PodSelector) {
					t.Errorf("%s admits pods %v, which no workload has", np, from.PodSelector.MatchLabels)
				}
			}
		}
	}
}

// checkContainers: every container has readiness and liveness probes and
// requests CPU and memory.
func (m *k8sManifests) checkContainers(t *testing.T) {
	for _, w := range m.workloads {
		for _, c := range w.Spec.Template.Spec.Containers {
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s, container %s, lacks a readiness or liveness probe", w, c.Name)
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
				t.Errorf("%s, container %s, requests no cpu or memory", w, c.Name)
			}
		}
	}
}

// readNodes reads the onair containers' settings, and finds the edge.
func (m *k8sManifests) readNodes(t *testing.T) {
	secretNames := map[string]bool{}
	for _, w := range m.workloads {
		for _, c := range w.Spec.Template.Spec.Containers {
			if strings.HasPrefix(c.Image, "nginx") {
				m.edge, m.edgeC = w, c
			}
			if !isOnairImage(c.Image) {
				continue
			}
			env, secrets, err := c.environment()
			if err != nil {
				t.Errorf("%s: %v", w, err)
			}
			for _, e := range c.Env {
				if secretEnv(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s sets %s in the manifest; take it from the Secret", w, e.Name)
				}
			}
			for _, k := range []string{"ONAIR_CHANNEL", "ONAIR_SECRET", "ONAIR_ADMIN_TOKEN"} {
				if _, ok := secrets[k]; !ok {
					t.Errorf("%s does not take %s from the Secret: every node must share it", w, k)
				}
			}
			for _, s := range secrets {
				secretNames[s] = true
			}
			if n, ok := loadDeployNode(t, w.String(), env); ok {
				m.nodes = append(m.nodes, k8sNode{n, w, c})
			}
		}
	}
	if len(secretNames) > 1 {
		t.Errorf("the nodes take their secrets from several Secrets %v", slices.Sorted(maps.Keys(secretNames)))
	}
	if len(m.nodes) < 2 {
		t.Fatalf("%d onair workloads that onair accepts; the scale-out topology has several", len(m.nodes))
	}
	if m.edge == nil {
		t.Fatal("no nginx edge in deploy/k8s")
	}
	var err error
	if m.edgeEnv, _, err = m.edgeC.environment(); err != nil {
		t.Errorf("the edge: %v", err)
	}
	m.edgePort = listenPort(m.edgeEnv["EDGE_LISTEN"])
	if m.podNet, err = netip.ParsePrefix(m.edgeEnv["EDGE_PURGE_FROM"]); err != nil || !m.podNet.Addr().IsPrivate() {
		t.Errorf("the edge's EDGE_PURGE_FROM %q is not a private network (the pods', whose addresses are not fixed): %v", m.edgeEnv["EDGE_PURGE_FROM"], err)
	}
}

// node is the onair node a target is, if it is one.
func (m *k8sManifests) node(tg k8sTarget) (k8sNode, bool) {
	for _, n := range m.nodes {
		if n.w == tg.w && n.c.Name == tg.c.Name {
			return n, true
		}
	}
	return k8sNode{}, false
}

// checkEdge: the edge's template is the one in deploy/nginx, nginx accepts it
// with the edge's environment, and its upstreams reach the nodes of their roles.
func (m *k8sManifests) checkEdge(t *testing.T) {
	c := m.edgeC
	if !c.has(m.edgePort) {
		t.Errorf("the edge listens on %d (EDGE_LISTEN) but its container ports are %v", m.edgePort, c.Ports)
	}
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	var tmpl string
	emptyConfD := false
	for _, v := range m.edge.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil && mounts["/etc/nginx/templates"] == v.Name:
			for _, cm := range m.byKind["ConfigMap"] {
				if cm.Metadata.Name != v.ConfigMap.Name {
					continue
				}
				for key, data := range cm.Data {
					if strings.HasSuffix(key, ".template") {
						tmpl = data
					}
				}
			}
		case v.EmptyDir != nil && mounts["/etc/nginx/conf.d"] == v.Name:
			emptyConfD = true
		}
	}
	if !emptyConfD {
		t.Error("the edge keeps the image's conf.d/default.conf, whose server answers requests for localhost before the template's: mount an emptyDir on /etc/nginx/conf.d")
	}
	file, err := os.ReadFile(filepath.Join(deployDir, "nginx/onair-edge-cluster.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	if tmpl != string(file) {
		t.Error("the edge's ConfigMap does not hold deploy/nginx/onair-edge-cluster.conf.template as it is: copy it again")
	}
	checkEdgeTemplate(t, "the Kubernetes edge", tmpl, m.edgeEnv)
	served := servedPaths(tmpl)
	for _, p := range []*k8sProbe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || !served[p.HTTPGet.Path] || c.port(p.HTTPGet.Port) != m.edgePort {
			t.Errorf("an edge probe does not ask a path the template answers itself (%v) on port %d", slices.Sorted(maps.Keys(served)), m.edgePort)
		}
	}

	reached := map[role]bool{}
	for v, want := range edgeUpstreams {
		hosts, err := upstreamHosts(m.edgeEnv[v])
		if err != nil {
			t.Errorf("the edge's %s: %v", v, err)
			continue
		}
		for _, h := range hosts {
			host, _, _ := net.SplitHostPort(h)
			targets := m.targets(host, addrPort(h))
			if len(targets) == 0 {
				t.Errorf("the edge's %s names %s, which is no Service port reaching a pod", v, h)
			}
			for _, tg := range targets {
				n, ok := m.node(tg)
				switch {
				case !ok:
					t.Errorf("the edge's %s names %s, which reaches %s, no onair node", v, h, tg.w)
				case !want.servedBy(n.roles):
					t.Errorf("the edge's %s names %s, which reaches %s with the roles %s", v, h, n.name, n.roles)
				case tg.port != n.httpPort():
					t.Errorf("the edge's %s names %s, which reaches port %d of %s, listening on %d", v, h, tg.port, n.name, n.httpPort())
				default:
					reached[want.role] = true
				}
			}
		}
	}
	for _, want := range edgeUpstreams {
		if !reached[want.role] {
			t.Errorf("the edge reaches no node with the role %s", want.role)
		}
	}
}

// checkNode: a node's ports and probes, the Services it names, and whom it trusts.
func (m *k8sManifests) checkNode(t *testing.T, n k8sNode) {
	for _, p := range n.c.Ports {
		if p.ContainerPort != n.httpPort() && !(n.roles.has(roleIngest) && p.ContainerPort == n.rtmpPort()) {
			t.Errorf("%s declares container port %d, where it does not listen (http-addr %s, rtmp-addr %s, roles %s)", n.name, p.ContainerPort, n.cfg.HTTPAddr, n.cfg.RTMPAddr, n.roles)
		}
	}
	for _, want := range []struct {
		probe      *k8sProbe
		kind, path string
	}{{n.c.ReadinessProbe, "readiness", "/readyz"}, {n.c.LivenessProbe, "liveness", "/healthz"}} {
		switch {
		case want.probe == nil || want.probe.HTTPGet == nil:
			t.Errorf("%s has no HTTP %s probe", n.name, want.kind)
		case want.probe.HTTPGet.Path != want.path || !onairProbePaths[want.path]:
			t.Errorf("%s's %s probe asks %s; it should ask %s", n.name, want.kind, want.probe.HTTPGet.Path, want.path)
		case n.c.port(want.probe.HTTPGet.Port) != n.httpPort():
			t.Errorf("%s's %s probe asks port %q; onair listens on %d", n.name, want.kind, want.probe.HTTPGet.Port.Value, n.httpPort())
		}
	}

	if n.roles.has(roleIngest) {
		host, port, err := urlHostPort(n.cfg.NodeAddr)
		if err != nil || host != plausiblePodIP || port != n.httpPort() {
			t.Errorf("%s's ONAIR_NODE_ADDR is %q with POD_IP %s; the other nodes reach it at http://$(POD_IP):%d", n.name, n.cfg.NodeAddr, plausiblePodIP, n.httpPort())
		}
		if n.w.Kind != "StatefulSet" {
			t.Errorf("%s is an ingest node; ingest nodes keep their data and names in a StatefulSet", n.name)
		}
	}
	if n.roles.has(roleIngest) || n.roles.has(roleChat) {
		if !slices.ContainsFunc(m.byKind["PodDisruptionBudget"], func(pdb *k8sObject) bool { return pdb.matchSelector().matches(n.w.podLabels()) }) {
			t.Errorf("%s (roles %s) has no PodDisruptionBudget", n.name, n.roles)
		}
	}
	if host, port, err := urlHostPort(n.cfg.RedisURL); err != nil || !slices.ContainsFunc(m.targets(host, port), func(tg k8sTarget) bool { return strings.HasPrefix(tg.c.Image, "redis") }) {
		t.Errorf("%s's ONAIR_REDIS_URL %q is not a Service reaching Redis", n.name, n.cfg.RedisURL)
	}

	// Takedowns come from moderation (ingest) and the admin API (web), from pod
	// addresses.
	if n.roles.has(roleIngest) || n.roles.has(roleWeb) {
		purges := n.cfg.edgePurgeURLs()
		if len(purges) == 0 {
			t.Errorf("%s takes broadcasts down but purges no edge (ONAIR_EDGE_PURGE)", n.name)
		}
		for _, u := range purges {
			host, port, err := urlHostPort(u)
			targets := m.targets(host, port)
			if err != nil || len(targets) == 0 || slices.ContainsFunc(targets, func(tg k8sTarget) bool { return tg.w != m.edge || tg.port != m.edgePort }) {
				t.Errorf("%s purges %s, which is not a Service reaching the edge's port %d", n.name, u, m.edgePort)
			}
		}
	}

	// Pod addresses are not fixed, so the nodes trust the pod network, and a
	// NetworkPolicy lets nothing but the edge (and the nodes themselves, for the
	// origins' fetches) reach their HTTP port.
	if m.podNet.IsValid() && !n.trusts(m.podNet.Addr().Next()) {
		t.Errorf("%s's ONAIR_TRUSTED_PROXIES %v does not hold the pod network %s, where the edge's requests come from", n.name, n.cfg.TrustedProxies, m.podNet)
	}
	guarded := false
	for _, np := range m.byKind["NetworkPolicy"] {
		if !np.Spec.PodSelector.matches(n.w.podLabels()) {
			continue
		}
		guarded = true
		for _, rule := range np.Spec.Ingress {
			covers := len(rule.Ports) == 0
			for _, p := range rule.Ports {
				covers = covers || n.c.port(p.Port) == n.httpPort()
			}
			if !covers {
				continue
			}
			if len(rule.From) == 0 {
				t.Errorf("%s lets anyone reach %s's HTTP port, whose X-Forwarded-For it believes from pod addresses", np, n.name)
			}
			for _, from := range rule.From {
				ours := from.PodSelector != nil && from.NamespaceSelector == nil && from.IPBlock == nil &&
					(from.PodSelector.matches(m.edge.podLabels()) || slices.ContainsFunc(m.nodes, func(o k8sNode) bool { return from.PodSelector.matches(o.w.podLabels()) }))
				if !ours {
					t.Errorf("%s lets more than the edge and onair's own pods reach %s's HTTP port (a peer with an ipBlock, a namespaceSelector or other pods)", np, n.name)
				}
			}
		}
	}
	if !guarded {
		t.Errorf("no NetworkPolicy keeps all but the edge from %s's HTTP port, whose X-Forwarded-For it believes from the whole pod network", n.name)
	}
}

// checkRoles: every role runs somewhere, and publishers reach the ingest nodes
// from outside.
func (m *k8sManifests) checkRoles(t *testing.T) {
	all := roles{}
	for _, n := range m.nodes {
		maps.Copy(all, n.roles)
	}
	for _, r := range allRoles {
		if !all[r] {
			t.Errorf("no node has the role %s", r)
		}
	}
	for _, svc := range m.byKind["Service"] {
		if svc.Spec.Type != "LoadBalancer" && svc.Spec.Type != "NodePort" {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			for _, tg := range m.targets(svc.Metadata.Name, sp.Port) {
				if n, ok := m.node(tg); ok && n.roles.has(roleIngest) && tg.port == n.rtmpPort() {
					return
				}
			}
		}
	}
	t.Error("no LoadBalancer or NodePort Service reaches the ingest nodes' RTMP port")
}
