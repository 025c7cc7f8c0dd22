// Package templates holds the template tree of the generated project.
//
// The tree mirrors the output exactly: templates/cmd/server/main.go.tmpl
// becomes cmd/server/main.go in the generated project. Files ending in .tmpl
// are rendered with text/template (the suffix is dropped); all other files are
// copied as they are. Which feature owns which file is decided by the manifest
// in package generator, not here.
//
// A directory named after a file plus ".d" holds that file's fragments
// (README.md.d/db.md.tmpl): parts of README.md.tmpl that a feature owns,
// parsed with it and included by name, never written as files of their own.
//
// Go sources and go.mod/go.sum must carry the .tmpl suffix: a plain .go file
// here would be compiled as part of this module, and a plain go.mod would cut
// its directory out of the module (and out of the embedded tree).
package templates

import "embed"

// FS is the template tree. "all:" keeps files whose names start with '.' or
// '_' (such as .gitignore); this file itself is skipped by the generator.
//
//go:embed all:*
var FS embed.FS

// Self is the name of this file, which sits in the tree but is not a template.
const Self = "templates.go"
