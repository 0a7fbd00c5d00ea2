package sigv4rules

import (
	"strings"
	"testing"
)

func TestValidKeyID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"reference style", "YCAJEtestkey0001", true},
		{"separators allowed", "a-b_c.d", true},
		{"longest", strings.Repeat("a", MaxKeyIDLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxKeyIDLen+1), false},
		{"slash would split the scope", "a/b", false},
		{"space", "a b", false},
		{"control", "a\nb", false},
		{"non-ASCII", "ключ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidKeyID(tt.in); got != tt.want {
				t.Errorf("ValidKeyID(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidScopePart(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"ru-central1", true}, {"grpc", true}, {"s3_x", true}, {strings.Repeat("a", 64), true},
		{"", false}, {strings.Repeat("a", 65), false}, {"Upper", false}, {"a/b", false}, {"a.b", false},
	}
	for _, tt := range tests {
		if got := ValidScopePart(tt.in); got != tt.want {
			t.Errorf("ValidScopePart(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidPath(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"/iamtoken.demo.v1.StorageService/PutObject", true}, {"/a~b/c-d_e", true},
		{"", false}, {"a/b", false}, {"/a b", false}, {"/a%2Fb", false}, {"/a?b", false}, {"/ä", false},
	}
	for _, tt := range tests {
		if got := ValidPath(tt.in); got != tt.want {
			t.Errorf("ValidPath(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
