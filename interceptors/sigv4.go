package interceptors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/iamtoken/iamtoken-go/internal/sigv4rules"
)

// This file holds the pieces of AWS Signature Version 4 (AWS4-HMAC-SHA256)
// the access-key check needs: a strict parser of the Authorization value, the
// canonical request of a gRPC call, and the signature derivation. They are
// written here rather than taken from a signer library because a verifier
// needs the parse and works from gRPC metadata, not an *http.Request; tests
// prove the result equal to the maintained signers' (smithy-go aws-http-auth
// and aws-sdk-go-v2).

const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	// sigV4TimeFormat is x-amz-date's format; sigV4DateFormat the scope's.
	sigV4TimeFormat = "20060102T150405Z"
	sigV4DateFormat = "20060102"
	// sigV4Terminator ends every credential scope.
	sigV4Terminator = "aws4_request"
	// unsignedPayload is the payload hash of every call: per-call credentials
	// never see the message body, and TLS protects it.
	unsignedPayload = "UNSIGNED-PAYLOAD"

	// maxAuthorizationLen bounds the value parsed: a real one is ~250 bytes.
	maxAuthorizationLen = 2048
	// maxSignedHeaders bounds the SignedHeaders list.
	maxSignedHeaders = 32
)

// Metadata keys of a signed call. gRPC metadata keys are lowercase.
const (
	sigV4MDAuthorization = "authorization"
	sigV4MDDate          = "x-amz-date"
	sigV4MDContentSHA256 = "x-amz-content-sha256"
	sigV4MDSecurityToken = "x-amz-security-token"
	sigV4AmzPrefix       = "x-amz-"
	sigV4Host            = "host"
)

// errMalformedAuthorization is what the parser returns for any value that is
// not exactly the AWS4-HMAC-SHA256 form. It says which part is wrong but
// never repeats the value.
var errMalformedAuthorization = errors.New("interceptors: malformed AWS4-HMAC-SHA256 authorization")

// sigV4Authorization is a parsed Authorization value:
//
//	AWS4-HMAC-SHA256 Credential=KEYID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b;c, Signature=<64 hex>
type sigV4Authorization struct {
	KeyID   string
	Date    string // YYYYMMDD
	Region  string
	Service string
	// SignedHeaders is the list as sent ("a;b;c"): it goes verbatim into the
	// canonical request.
	SignedHeaders string
	// Headers is SignedHeaders split, in its (strictly ascending) order.
	Headers []string
	// Signature is the decoded 32-byte signature.
	Signature [sha256.Size]byte
}

// parseSigV4Authorization parses v strictly: the exact layout the AWS SDKs
// produce (the three parts in this order, separated by ", "), every part
// checked. Anything else is refused rather than guessed at.
func parseSigV4Authorization(v string) (*sigV4Authorization, error) {
	if len(v) > maxAuthorizationLen {
		return nil, malformedAuthorization("too long")
	}
	rest, ok := strings.CutPrefix(v, sigV4Algorithm+" Credential=")
	if !ok {
		return nil, malformedAuthorization("does not start with \"" + sigV4Algorithm + " Credential=\"")
	}
	cred, rest, ok := strings.Cut(rest, ", SignedHeaders=")
	if !ok {
		return nil, malformedAuthorization("no \", SignedHeaders=\" after the credential")
	}
	signed, sig, ok := strings.Cut(rest, ", Signature=")
	if !ok {
		return nil, malformedAuthorization("no \", Signature=\" after the signed headers")
	}

	a := &sigV4Authorization{SignedHeaders: signed}
	var terminator string
	var ok1, ok2, ok3, ok4 bool
	a.KeyID, cred, ok1 = strings.Cut(cred, "/")
	a.Date, cred, ok2 = strings.Cut(cred, "/")
	a.Region, cred, ok3 = strings.Cut(cred, "/")
	a.Service, terminator, ok4 = strings.Cut(cred, "/")
	if !ok1 || !ok2 || !ok3 || !ok4 || strings.Contains(terminator, "/") {
		return nil, malformedAuthorization("credential is not KEYID/DATE/REGION/SERVICE/aws4_request")
	}
	if !sigv4rules.ValidKeyID(a.KeyID) {
		return nil, malformedAuthorization("invalid access key ID")
	}
	if !validScopeDate(a.Date) {
		return nil, malformedAuthorization("credential scope date is not YYYYMMDD")
	}
	if !sigv4rules.ValidScopePart(a.Region) || !sigv4rules.ValidScopePart(a.Service) {
		return nil, malformedAuthorization("invalid credential scope region or service")
	}
	if terminator != sigV4Terminator {
		return nil, malformedAuthorization("credential scope does not end with aws4_request")
	}

	headers, err := parseSignedHeaders(signed)
	if err != nil {
		return nil, err
	}
	a.Headers = headers

	if len(sig) != 2*sha256.Size || !sigV4IsLowerHex(sig) {
		return nil, malformedAuthorization("signature is not 64 lowercase hex digits")
	}
	if _, err := hex.Decode(a.Signature[:], []byte(sig)); err != nil {
		return nil, malformedAuthorization("signature is not 64 lowercase hex digits")
	}
	return a, nil
}

// parseSignedHeaders splits "a;b;c" and checks that the names are lowercase
// header names in strictly ascending order (so none repeats), as the
// canonical request requires.
func parseSignedHeaders(s string) ([]string, error) {
	if s == "" {
		return nil, malformedAuthorization("empty SignedHeaders")
	}
	if strings.Count(s, ";") >= maxSignedHeaders {
		return nil, malformedAuthorization("too many SignedHeaders")
	}
	headers := strings.Split(s, ";")
	for i, h := range headers {
		if !validHeaderName(h) {
			return nil, malformedAuthorization("invalid name in SignedHeaders")
		}
		if i > 0 && headers[i-1] >= h {
			return nil, malformedAuthorization("SignedHeaders not in strictly ascending order")
		}
	}
	return headers, nil
}

func malformedAuthorization(why string) error {
	return &sigV4ParseError{why: why}
}

// sigV4ParseError is errMalformedAuthorization with the reason; errors.Is matches
// the sentinel.
type sigV4ParseError struct{ why string }

func (e *sigV4ParseError) Error() string { return errMalformedAuthorization.Error() + ": " + e.why }
func (e *sigV4ParseError) Is(target error) bool {
	return target == errMalformedAuthorization
}

func validScopeDate(s string) bool {
	if len(s) != len(sigV4DateFormat) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validHeaderName accepts a lowercase HTTP token of letters, digits, '-',
// '_' and '.'. It excludes pseudo-headers (":authority") by construction.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func sigV4IsLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// validCanonicalValue reports whether a signed header value canonicalizes to
// itself under every signer's rules: printable ASCII (all gRPC allows in
// text metadata, and no Unicode spaces for a signer to trim), no leading or
// trailing space and no run of spaces (which aws-sdk-go-v2 collapses and
// others do not).
func validCanonicalValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e {
			return false
		}
		if c == ' ' && (i == 0 || i == len(v)-1 || v[i+1] == ' ') {
			return false
		}
	}
	return true
}

// canonicalHost is the host a call is signed for: its authority without the
// default port, as gRPC hands it to call credentials and as HTTP clients
// send Host.
func canonicalHost(authority string) string {
	return strings.TrimSuffix(authority, ":443")
}

// sigV4StringToSign appends to dst the string to sign of a call, made from
// its canonical request:
//
//	POST
//	<full method>
//	(empty query)
//	<name>:<value>\n for each signed header
//	(blank line)
//	<signed headers>
//	UNSIGNED-PAYLOAD
//
// value returns a signed header's value; the caller has checked that every
// value is canonical (validCanonicalValue).
func sigV4StringToSign(dst []byte, fullMethod, amzDate string, a *sigV4Authorization, value func(name string) string) []byte {
	// A canonical request is a few hundred bytes: build it on the stack.
	var arr [1024]byte
	cr := append(arr[:0], "POST\n"...)
	cr = append(cr, fullMethod...)
	cr = append(cr, "\n\n"...)
	for _, name := range a.Headers {
		cr = append(cr, name...)
		cr = append(cr, ':')
		cr = append(cr, value(name)...)
		cr = append(cr, '\n')
	}
	cr = append(cr, '\n')
	cr = append(cr, a.SignedHeaders...)
	cr = append(cr, "\n"+unsignedPayload...)
	sum := sha256.Sum256(cr)

	dst = append(dst, sigV4Algorithm+"\n"...)
	dst = append(dst, amzDate...)
	dst = append(dst, '\n')
	dst = append(dst, a.Date...)
	dst = append(dst, '/')
	dst = append(dst, a.Region...)
	dst = append(dst, '/')
	dst = append(dst, a.Service...)
	dst = append(dst, "/"+sigV4Terminator+"\n"...)
	return hex.AppendEncode(dst, sum[:])
}

// sigV4SigningKey derives the signing key of a scope from the secret:
// HMAC chain over "AWS4"+secret, date, region, service, "aws4_request".
func sigV4SigningKey(secret []byte, date, region, service string) []byte {
	k := make([]byte, 0, 4+len(secret))
	k = append(k, "AWS4"...)
	k = append(k, secret...)
	key := hmacSHA256(k, date)
	clear(k)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	return hmacSHA256(key, sigV4Terminator)
}

// sigV4Signature is HMAC-SHA256(signing key, string to sign).
func sigV4Signature(signingKey, stringToSign []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, signingKey)
	m.Write(stringToSign)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	return sum
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// parseAmzDate parses an x-amz-date value strictly (YYYYMMDDTHHMMSSZ, UTC).
func parseAmzDate(v string) (time.Time, bool) {
	if len(v) != len(sigV4TimeFormat) {
		return time.Time{}, false
	}
	t, err := time.Parse(sigV4TimeFormat, v)
	if err != nil {
		return time.Time{}, false
	}
	// time.Parse accepts some fields with fewer digits; only the exact form
	// formats back to the same string.
	var buf [len(sigV4TimeFormat)]byte
	if string(t.AppendFormat(buf[:0], sigV4TimeFormat)) != v {
		return time.Time{}, false
	}
	return t, true
}
