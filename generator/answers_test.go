package generator

import (
	"slices"
	"strings"
	"testing"
)

// withFeatures swaps in a manifest with the features the product plans, so
// feature parsing and dependencies can be tested before their templates exist.
func withFeatures(t *testing.T) {
	saved := Features
	Features = []Feature{
		{Name: "db", Description: "PostgreSQL"},
		{Name: "cache", Description: "Redis cache", Needs: []string{"db"}},
		{Name: "blob", Description: "S3 blobs"},
		{Name: "worker", Description: "leader-elected jobs", Needs: []string{"db"}},
		{Name: "compose", Description: "docker compose"},
	}
	t.Cleanup(func() { Features = saved })
}

func TestParseFeatures(t *testing.T) {
	withFeatures(t)
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: "none", want: ""},
		{in: "all", want: "db,cache,blob,worker,compose"},
		{in: "compose, db ,blob", want: "db,blob,compose"},
		{in: "all,db", want: "db,cache,blob,worker,compose"},
		{in: "db,nosql", err: `unknown feature "nosql" (available: db, cache, blob, worker, compose, all, none)`},
		{in: "none,db", err: `features "none,db" mix "none" with features (give "none" alone, or only feature names)`},
	} {
		got, err := ParseFeatures(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseFeatures(%q) error = %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseFeatures(%q) = %v, %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseFeaturesNoneAvailable(t *testing.T) {
	saved := Features
	Features = nil
	defer func() { Features = saved }()
	_, err := ParseFeatures("db")
	if err == nil || err.Error() != `unknown feature "db" (available: none)` {
		t.Errorf("err = %v", err)
	}
	if got, err := ParseFeatures("all"); err != nil || len(got) != 0 {
		t.Errorf("all = %v, %v; want none", got, err)
	}
}

func TestResolve(t *testing.T) {
	withFeatures(t)
	got, added := Resolve([]string{"worker", "cache"})
	if want := []string{"db", "cache", "worker"}; !slices.Equal(got, want) {
		t.Errorf("Resolve = %v, want %v", got, want)
	}
	if len(added) != 1 || added[0] != (Added{Feature: "db", NeededBy: "cache"}) {
		t.Errorf("added = %v", added)
	}
	if got, added := Resolve([]string{"compose"}); !slices.Equal(got, []string{"compose"}) || len(added) != 0 {
		t.Errorf("Resolve(compose) = %v, %v", got, added)
	}
}

func TestCombinations(t *testing.T) {
	withFeatures(t)
	combos := Combinations()
	// db: 1 + its 4 subsets of {cache, worker}; blob and compose double it; without db 1.
	if len(combos) != (1+4)*4 {
		t.Errorf("%d combinations, want 20: %v", len(combos), combos)
	}
	for _, c := range combos {
		if resolved, _ := Resolve(c); !slices.Equal(resolved, c) {
			t.Errorf("combination %v is not resolved", c)
		}
	}
	if len(combos[0]) != 0 {
		t.Errorf("first combination %v, want the empty set", combos[0])
	}
}

func TestChecks(t *testing.T) {
	good := []error{CheckName("shop"), CheckName("a1-b2"), CheckModule("example.com/acme/shop"), CheckModule("github.com/a/b/v2"),
		CheckPort(1), CheckPort(65535), CheckReplicas(1), CheckReplicas(MaxReplicas), CheckLB("nginx"), CheckLB("haproxy")}
	for i, err := range good {
		if err != nil {
			t.Errorf("good value %d: %v", i, err)
		}
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{CheckName("Shop"), `invalid name "Shop"`},
		{CheckName("1shop"), `invalid name "1shop"`},
		{CheckName("shop_x"), `invalid name "shop_x"`},
		{CheckName("shop-"), `invalid name "shop-"`},
		{CheckName(strings.Repeat("a", 64)), `invalid name "aaaa`},
		{CheckModule("-shop"), `invalid module path "-shop": leading dash (use a path like example.com/acme/shop)`},
		{CheckModule("example.com/a b"), `invalid module path "example.com/a b": invalid char ' '`},
		{CheckPort(0), `port 0 is out of range (use --port between 1 and 65535)`},
		{CheckPort(70000), `port 70000 is out of range`},
		{CheckReplicas(0), `replicas 0 is out of range (use --replicas between 1 and 20)`},
		{CheckLB("traefik"), `unknown load balancer "traefik" (use --lb haproxy or --lb nginx)`},
	} {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), tc.want) {
			t.Errorf("error %v, want it to start with %s", tc.err, tc.want)
		}
	}
}

func TestAnswersFileRoundTrip(t *testing.T) {
	withFeatures(t)
	a := Answers{Name: "shop", Module: "example.com/acme/shop", Features: []string{"db", "cache"}, LB: "haproxy", Replicas: 4, Port: 8081}
	data := a.MarshalFile()
	fa, err := ParseFile(".scaffold.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fa.Features, a.Features) || fa.Name != a.Name || fa.Module != a.Module || fa.LB != a.LB || fa.Replicas != a.Replicas || fa.Port != a.Port {
		t.Errorf("round trip: %+v, want %+v", fa.Answers, a)
	}
	if fa.GeneratorVersion != Version || len(fa.Set) != 7 {
		t.Errorf("version %q, set %v", fa.GeneratorVersion, fa.Set)
	}
	if !strings.Contains(string(data), "features: [db, cache]\n") {
		t.Errorf("features not written as a flow list:\n%s", data)
	}
}

func TestParseFileErrors(t *testing.T) {
	saved := Features
	Features = nil
	defer func() { Features = saved }()
	for _, tc := range []struct{ in, want string }{
		{"name: shop\ncolour: blue\n", `unknown key "colour" in answers file f.yaml (line 2) (known keys: name, module, features, lb, replicas, port, generator_version)`},
		{"name: [shop\n", `answers file f.yaml is not valid YAML: line 1: did not find expected ',' or ']' (fix the file; a generated .scaffold.yaml shows the format)`},
		{"", `answers file f.yaml is empty (fix the file; a generated .scaffold.yaml shows the format)`},
		{"- a\n", `answers file f.yaml line 1: is not a mapping of keys to answers (fix the file; a generated .scaffold.yaml shows the format)`},
		{"port: eighty\n", `answers file f.yaml line 1: port must be a whole number, not "eighty" (fix the file; a generated .scaffold.yaml shows the format)`},
		{"features: [nosql]\n", `unknown feature "nosql" in answers file f.yaml (line 1) (available: none)`},
		{"name: a\nname: b\n", `answers file f.yaml line 2: key "name" is given twice (fix the file; a generated .scaffold.yaml shows the format)`},
	} {
		_, err := ParseFile("f.yaml", []byte(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseFile(%q):\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

func TestDeriveName(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen-1) + "_b"
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"shop", "shop", true},
		{"My_Service", "my-service", true},
		{"my app", "my-app", true},
		{"--My  App!!", "my-app", true},
		{"Shop.v2", "shop-v2", true},
		{long, strings.Repeat("a", MaxNameLen-1), true}, // cut, then no '-' at the end
		{"2024", "2024", false},
		{"___", "", false},
		{"", "", false},
	} {
		got, ok := DeriveName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("DeriveName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// CheckModule accepts what go mod init accepts, and says what to drop from a
// pasted URL.
func TestCheckModule(t *testing.T) {
	for _, ok := range []string{"shop", "example.com/acme/shop", "github.com/acme/shop/v2", "acme/shop", "gopkg.in/yaml.v3"} {
		if err := CheckModule(ok); err != nil {
			t.Errorf("CheckModule(%q) = %v, want nil", ok, err)
		}
	}
	for in, want := range map[string]string{
		"https://github.com/acme/shop":       `module path "https://github.com/acme/shop" is a URL, not a module path (drop the https://: use github.com/acme/shop)`,
		"http://example.com/shop/":           `module path "http://example.com/shop/" is a URL, not a module path (drop the http://: use example.com/shop)`,
		"ssh://git@github.com/acme/shop.git": `module path "ssh://git@github.com/acme/shop.git" is a URL, not a module path (drop the ssh://: use github.com/acme/shop)`,
		"git@github.com:acme/shop.git":       `module path "git@github.com:acme/shop.git" is a URL, not a module path (drop the git@: use github.com/acme/shop)`,
		"foo bar":                            `invalid module path "foo bar": invalid char ' ' (use a path like example.com/acme/shop)`,
		"toolchain":                          `invalid module path "toolchain": module path is reserved (use a path like example.com/acme/shop)`,
		"example.com/shop/v1":                `invalid module path "example.com/shop/v1": major version suffixes must be in the form of /vN and are only allowed for v2 or later (drop the suffix, or use /v2 or later)`,
	} {
		err := CheckModule(in)
		if err == nil || err.Error() != want {
			t.Errorf("CheckModule(%q) = %v\nwant %s", in, err, want)
		}
	}
}
