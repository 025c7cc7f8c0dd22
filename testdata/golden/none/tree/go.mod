module github.com/acme/plain

go 1.26.0
