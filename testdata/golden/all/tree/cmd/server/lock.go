package main

import (
	"example.com/acme/shop/httpapi"
	"example.com/acme/shop/postgres"
)

// openLocks serves POST /api/notes/{id}/append with the lock in PostgreSQL
// (the locks table). There is no in-process lock for one instance: the
// feature needs PostgreSQL anyway, the same lock is as correct on one
// instance as on many, and a second implementation would need a fence of
// its own. Nothing to close: the lock lives on the database pool.
func openLocks(opts *httpapi.Options, db database) {
	opts.Locks = postgres.NewLocker(db.DB)
	opts.FencedNotes = db.notes
}
