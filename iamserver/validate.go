package iamserver

import (
	"regexp"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const maxDescriptionLen = 256

// nameRE is the reference deployment's resource-name rule.
var nameRE = regexp.MustCompile(`^[a-z][-a-z0-9]{1,61}[a-z0-9]$`)

// invalidArgument names the offending field; it never echoes the value,
// which may be anything a client sent.
func invalidArgument(field, problem string) error {
	return status.Error(codes.InvalidArgument, "iamserver: "+field+": "+problem)
}

func checkID(field, id string) error {
	if id == "" {
		return invalidArgument(field, "required")
	}
	if !validID(id) {
		return invalidArgument(field, "not a valid ID (20 characters of a-v and 0-9)")
	}
	return nil
}

func checkName(field, name string) error {
	if !nameRE.MatchString(name) {
		return invalidArgument(field, "3 to 63 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen")
	}
	return nil
}

func checkDescription(field, d string) error {
	if !utf8.ValidString(d) {
		return invalidArgument(field, "not valid UTF-8")
	}
	if utf8.RuneCountInString(d) > maxDescriptionLen {
		return invalidArgument(field, "longer than 256 characters")
	}
	for _, r := range d {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return invalidArgument(field, "contains control characters")
		}
	}
	return nil
}

// checkPage turns page_size and page_token into a Page.
func checkPage(size int64, token string) (Page, error) {
	switch {
	case size < 0:
		return Page{}, invalidArgument("page_size", "negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	if token != "" && !validID(token) {
		return Page{}, invalidArgument("page_token", "not a token this server returned")
	}
	return Page{After: token, Limit: int(size)}, nil
}

// nextPageToken is the last ID of a full page: the next page starts after
// it. A short page is the last.
func nextPageToken(n int, p Page, lastID string) string {
	if n < p.Limit {
		return ""
	}
	return lastID
}
