package main

import (
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of deploy/docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]struct {
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Networks    yaml.Node         `yaml:"networks"`
	} `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
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

// The compose stack (Docker cannot run here, so it is checked by reading it):
// every ONAIR_* variable is a setting onair has and accepts, and onair trusts
// X-Forwarded-For from the edge's address only, not from Docker's gateway
// (which fronts the published ports) nor any other container.
func TestComposeStack(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("deploy/docker-compose.yml: %v", err)
	}
	onair, edge := cf.Services["onair"], cf.Services["edge"]
	known := map[string]bool{}
	cfg := defaultConfig()
	for _, f := range cfg.fields() {
		known[envName(f.key)] = true
	}
	for k := range onair.Environment {
		if strings.HasPrefix(k, "ONAIR_") && !known[k] {
			t.Errorf("the onair service sets %s, which is not a setting (typo?)", k)
		}
	}
	fs := flag.NewFlagSet("compose", flag.ContinueOnError)
	if _, err := loadConfig(fs, nil, func(k string) string { return onair.Environment[k] }); err != nil {
		t.Errorf("onair refuses the compose stack's settings: %v", err)
	}

	var trusted []netip.Prefix
	for _, s := range strings.Split(onair.Environment["ONAIR_TRUSTED_PROXIES"], ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("ONAIR_TRUSTED_PROXIES %q: %v", onair.Environment["ONAIR_TRUSTED_PROXIES"], err)
		}
		trusted = append(trusted, p)
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	const network = "onair"
	edgeAddr, ok := addressOn(edge.Networks, network)
	if !ok {
		t.Fatal("the edge has no fixed address on the onair network, so onair cannot name it as its proxy")
	}
	if !isTrusted(edgeAddr) {
		t.Errorf("the edge %s is not in ONAIR_TRUSTED_PROXIES %v: behind it every viewer is one IP", edgeAddr, trusted)
	}
	subnet, err := netip.ParsePrefix(cf.Networks[network].IPAM.Config[0].Subnet)
	if err != nil || !subnet.Contains(edgeAddr) {
		t.Fatalf("the onair network's subnet %v (%v) does not hold the edge %s", cf.Networks[network].IPAM.Config, err, edgeAddr)
	}
	gateway := subnet.Addr().Next()
	if isTrusted(gateway) {
		t.Errorf("ONAIR_TRUSTED_PROXIES %v covers Docker's gateway %s: any client of a published port could claim any address", trusted, gateway)
	}
	if a, ok := addressOn(onair.Networks, network); ok && isTrusted(a) {
		t.Errorf("ONAIR_TRUSTED_PROXIES %v covers onair's own address %s", trusted, a)
	}
	if origin := edge.Environment["ONAIR_ORIGIN"]; !strings.HasPrefix(origin, "onair:") {
		t.Errorf("the edge's ONAIR_ORIGIN %q is not the onair service", origin)
	}
	mounted := false
	for _, v := range edge.Volumes {
		mounted = mounted || strings.HasPrefix(v, "./nginx/onair-edge.conf.template:")
	}
	if !mounted {
		t.Error("the edge does not mount deploy/nginx/onair-edge.conf.template")
	}
	for _, svc := range cf.Services {
		for k, v := range svc.Environment {
			if strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") {
				t.Errorf("the compose file holds a secret (%s=%s…): generate it in the data directory or pass it from an env file", k, v[:min(len(v), 3)])
			}
		}
	}
}
