// Package sigv4rules holds the shape rules of an AWS Signature Version 4 signed
// call that the client's signer (grpcauth) and the server's verifier
// (interceptors) must agree on. Keeping one copy means a call the verifier
// would refuse for its shape is refused by the signer first, with a clearer
// message, and the two can never drift apart.
package sigv4rules

// MaxKeyIDLen bounds an access key ID.
const MaxKeyIDLen = 128

// ValidKeyID accepts the characters access key IDs are made of: ASCII
// letters, digits, '-', '_' and '.'. It keeps separators, spaces and control
// characters out of the credential scope and the logs.
func ValidKeyID(s string) bool {
	if s == "" || len(s) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// ValidScopePart accepts a region or service name: 1–64 lowercase letters,
// digits, '-' and '_'.
func ValidScopePart(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// ValidPath reports whether a full method name is made only of characters
// SigV4's URI encoding leaves as they are (unreserved and '/'). Every proto
// method name is; refusing the others means the canonical path is the method
// name verbatim, with no escaping rules for two signers to disagree on.
func ValidPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' && c != '~' && c != '/' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}
