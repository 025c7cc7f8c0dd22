package config

// DB holds the settings of the db feature.
type DB struct {
	// DatabaseURL is the PostgreSQL connection URL (DATABASE_URL); required,
	// there is no single-node stand-in for the database.
	DatabaseURL string
	// DBPoolSize is the most connections this instance opens (DB_POOL_SIZE).
	// Every replica opens its own pool: replicas x DBPoolSize must stay
	// below the server's max_connections minus a reserve.
	DBPoolSize int
	// MigrateOnStart applies pending migrations, under a lock, before
	// serving (MIGRATE_ON_START); off, run the migrate command instead.
	MigrateOnStart bool
}

func loadDB(r *reader, c *Config) {
	c.DatabaseURL = r.required("DATABASE_URL",
		"the db feature keeps notes in PostgreSQL; set a URL such as postgres://user:pass@host:5432/db?sslmode=disable")
	c.DBPoolSize = r.int("DB_POOL_SIZE", 10, 1, 1000)
	c.MigrateOnStart = r.bool("MIGRATE_ON_START", true)
}
