package clustertest

// The apps' environment from a file instead of docker-compose.yml: what
// Kubernetes manifests (the k8s feature's deploy/k8s) give each pod, so that
// the same tests check the cluster the manifests describe. Unset, nothing
// here is used.
//
//	CLUSTERTEST_APP_ENV=/path/to/env.json go test -run TestRoundRobin ./clustertest
//
// The file lists the Services the manifests define (their in-cluster host
// names) and one entry per pod, in order, each with its name and its whole
// environment, as Kubernetes computes it (the ConfigMap, then the Secret,
// then the container's env, later winning):
//
//	{
//	  "services": ["shop", ...],
//	  "instances": [
//	    {"name": "shop-7d9f8c6b5d-x2k9p", "env": {"INSTANCE_ID": "shop-7d9f8c6b5d-x2k9p", "PORT": "8080", ...}},
//	    ...
//	  ]
//	}
//
// The apps then get that environment through the same mapping as the compose
// file's (instanceEnv: the servers' host names to the test's servers, PORT to
// a free port; render_test.go lists them), behind the same load balancer
// config rendered for as many instances. internal/k8scheck in the scaffold
// repository writes this file from the rendered dev overlay.

import (
	"encoding/json"
	"fmt"
	"os"
)

// appEnvVar names the file; see the top of this file.
const appEnvVar = "CLUSTERTEST_APP_ENV"

// appEnvFile is the file's content.
type appEnvFile struct {
	Services  []string `json:"services"`
	Instances []struct {
		Name string            `json:"name"`
		Env  map[string]string `json:"env"`
	} `json:"instances"`
}

// useAppEnvFile replaces the app-N services of p with the file's instances,
// keeping the other services (the load balancer and its config), and adds
// the file's Services to the host names a value must not still name after
// instanceEnv's mapping.
func (p *composeProject) useAppEnvFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", appEnvVar, err)
	}
	var f appEnvFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("%s=%s: %w", appEnvVar, path, err)
	}
	if len(f.Instances) == 0 {
		return fmt.Errorf("%s=%s: no instances", appEnvVar, path)
	}
	for _, name := range p.Apps {
		delete(p.Services, name)
	}
	p.Apps = nil
	for _, in := range f.Instances {
		// The tests know an instance by the X-Instance-ID it answers with,
		// which is its INSTANCE_ID.
		if in.Name == "" || in.Env["INSTANCE_ID"] != in.Name {
			return fmt.Errorf("%s=%s: instance %q has INSTANCE_ID %q, want its name", appEnvVar, path, in.Name, in.Env["INSTANCE_ID"])
		}
		if _, dup := p.Services[in.Name]; dup {
			return fmt.Errorf("%s=%s: instance %q twice, or named as a compose service", appEnvVar, path, in.Name)
		}
		p.Services[in.Name] = composeService{Environment: in.Env}
		p.Apps = append(p.Apps, in.Name)
	}
	p.Hosts = append(p.Hosts, f.Services...)
	return nil
}
