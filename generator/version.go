package generator

// Version is the generator version written into every .scaffold.yaml and
// shown by `scaffold version`. It is a constant, not read from build info,
// so that output stays byte-for-byte the same however scaffold was built;
// bumping it means `make golden reference`.
const Version = "0.1.0"

// GoVersion is the go directive of generated go.mod files.
const GoVersion = "1.26.0"
