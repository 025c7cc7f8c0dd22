package config

import (
	"strings"
	"testing"
)

func TestDB(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL == "" || c.DBPoolSize != 10 || !c.MigrateOnStart {
		t.Errorf("db defaults: url %q, pool %d, migrate %v; want 10 and true", c.DatabaseURL, c.DBPoolSize, c.MigrateOnStart)
	}
	c, err = Load(env("DB_POOL_SIZE", "25", "MIGRATE_ON_START", "false"))
	if err != nil || c.DBPoolSize != 25 || c.MigrateOnStart {
		t.Errorf("db values: pool %d, migrate %v (%v)", c.DBPoolSize, c.MigrateOnStart, err)
	}
}

func TestDBMissingURLSaysWhy(t *testing.T) {
	_, err := Load(env("DATABASE_URL", ""))
	if err == nil {
		t.Fatal("no error without DATABASE_URL")
	}
	for _, want := range []string{"DATABASE_URL is required", "PostgreSQL", "postgres://"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestDBInvalidValuesAreNamed(t *testing.T) {
	for _, kv := range [][2]string{
		{"DB_POOL_SIZE", "0"}, {"DB_POOL_SIZE", "1001"}, {"DB_POOL_SIZE", "ten"}, {"MIGRATE_ON_START", "sometimes"},
	} {
		_, err := Load(env(kv[0], kv[1]))
		if err == nil || !strings.Contains(err.Error(), kv[0]+`="`+kv[1]+`"`) {
			t.Errorf("%s=%s: error %v, want it named", kv[0], kv[1], err)
		}
	}
}
