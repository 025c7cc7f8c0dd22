// Package deploycheck holds only tests: the static checks of the deploy files
// the compose feature generates (docker-compose.yml, .env.example,
// deploy/nginx.conf, deploy/haproxy.cfg), for every feature combination with
// compose and each load balancer. docker-compose.yml is loaded with
// compose-go, the loader of docker compose itself; the load balancer configs
// are checked with the real `nginx -t` and `haproxy -c` (the Debian binaries:
// `apt-get install nginx haproxy`). Nothing is started.
package deploycheck
