package notes

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		in    Input
		field string // "" when valid
	}{
		{"ok", Input{Title: "groceries", Body: "milk"}, ""},
		{"empty body is fine", Input{Title: "t"}, ""},
		{"title at limit in runes", Input{Title: strings.Repeat("é", MaxTitle)}, ""},
		{"body at limit", Input{Title: "t", Body: strings.Repeat("ü", MaxBody)}, ""},
		{"empty title", Input{Title: ""}, "title"},
		{"blank title", Input{Title: " \t\n"}, "title"},
		{"long title", Input{Title: strings.Repeat("a", MaxTitle+1)}, "title"},
		{"long body", Input{Title: "t", Body: strings.Repeat("a", MaxBody+1)}, "body"},
		{"invalid utf8 title", Input{Title: "a\xffb"}, "title"},
		{"nul in body", Input{Title: "t", Body: "a\x00b"}, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			if ve.Field != tt.field || !strings.HasPrefix(err.Error(), tt.field+" ") {
				t.Fatalf("Validate() = %q (field %q), want it to name %q", err, ve.Field, tt.field)
			}
		})
	}
}
