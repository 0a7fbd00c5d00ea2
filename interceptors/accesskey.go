package interceptors

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/iamtoken/iamtoken-go/internal/sigv4rules"
)

const (
	// DefaultAccessKeyRegion is the credential scope region a verifier
	// accepts unless WithAccessKeyRegion says otherwise: the reference
	// deployment's region. grpcauth's access-key credentials sign with the
	// same default.
	DefaultAccessKeyRegion = "ru-central1"
	// DefaultAccessKeyService is the credential scope service a verifier
	// accepts unless WithAccessKeyService says otherwise.
	DefaultAccessKeyService = "grpc"
	// AccessKeySignatureWindow is how far a signed call's x-amz-date may be
	// from the server's clock, either way, as in AWS. A signature is also
	// accepted for this long after its date, which is the Principal's
	// ExpiresAt.
	AccessKeySignatureWindow = 15 * time.Minute
)

// SigV4Verifier is the AccessKeyVerifier for calls signed with AWS Signature
// Version 4 (AWS4-HMAC-SHA256) over the call's method path, authority and
// signed metadata, as grpcauth's access-key credentials and the AWS SDK
// signers produce them. It is safe for concurrent use.
//
// # What it checks
//
//   - exactly one authorization value, in the exact form
//     "AWS4-HMAC-SHA256 Credential=KEYID/DATE/REGION/SERVICE/aws4_request,
//     SignedHeaders=a;b;c, Signature=<64 lowercase hex>"; an IAM bearer token
//     is refused with its own message and never parsed;
//   - host and x-amz-date among the signed headers; every x-amz-* metadata
//     key present is signed; every signed header other than host is present
//     once; x-amz-content-sha256, if sent, is UNSIGNED-PAYLOAD;
//   - exactly one x-amz-date, within AccessKeySignatureWindow of the clock,
//     whose date is the scope's; the scope's region and service are the
//     configured ones;
//   - the key exists in the AccessKeyStore and is active, and the signature
//     matches (compared in constant time).
//
// Unknown keys, inactive keys and wrong signatures all get the same
// Unauthenticated message, which says nothing of the secret. (Key IDs are
// not secret: every call carries one in clear. An unknown one is refused
// without computing a signature.) The canonical request is POST, the full method as the path (only
// unreserved characters and '/' are accepted, so it needs no escaping), an
// empty query, the signed headers with host = the call's authority without
// ":443", and the payload hash UNSIGNED-PAYLOAD.
type SigV4Verifier struct {
	store   AccessKeyStore
	region  string
	service string
	now     func() time.Time
	// replay is nil unless WithAccessKeyReplayProtection was given.
	replay *replayCache
	keys   *signingKeyCache
}

var _ AccessKeyVerifier = (*SigV4Verifier)(nil)

type accessKeyVerifierOptions struct {
	region, service string
	now             func() time.Time
	replayCapacity  int
}

// AccessKeyVerifierOption configures NewAccessKeyVerifier.
type AccessKeyVerifierOption func(*accessKeyVerifierOptions) error

// WithAccessKeyRegion sets the credential scope region calls must be signed
// for. Optional; DefaultAccessKeyRegion.
func WithAccessKeyRegion(region string) AccessKeyVerifierOption {
	return func(o *accessKeyVerifierOptions) error {
		if !sigv4rules.ValidScopePart(region) {
			return fmt.Errorf("interceptors: WithAccessKeyRegion: %q is not 1-64 of [a-z0-9_-]", region)
		}
		o.region = region
		return nil
	}
}

// WithAccessKeyService sets the credential scope service calls must be
// signed for. Optional; DefaultAccessKeyService.
func WithAccessKeyService(service string) AccessKeyVerifierOption {
	return func(o *accessKeyVerifierOptions) error {
		if !sigv4rules.ValidScopePart(service) {
			return fmt.Errorf("interceptors: WithAccessKeyService: %q is not 1-64 of [a-z0-9_-]", service)
		}
		o.service = service
		return nil
	}
}

// WithAccessKeyClock sets the clock request times are judged by. Optional;
// time.Now. Tests use it.
func WithAccessKeyClock(now func() time.Time) AccessKeyVerifierOption {
	return func(o *accessKeyVerifierOptions) error {
		if now == nil {
			return errors.New("interceptors: WithAccessKeyClock: nil clock")
		}
		o.now = now
		return nil
	}
}

// WithAccessKeyReplayProtection refuses a signature seen before within its
// validity window, remembering up to capacity signatures. Optional; off by
// default, as in AWS.
//
// A signature is remembered from its first successful use until its date
// plus AccessKeySignatureWindow, after which the clock check refuses it
// anyway. Size capacity for the peak number of signed calls in 30 minutes:
// when the cache is full of live signatures, new calls are refused with
// Unavailable rather than letting an old signature be forgotten and
// replayed (fail closed). Memory is about 100 bytes per signature.
//
// The cache is per process: replicas behind a load balancer do not share
// it. Two identical calls in the same second would carry the same signature;
// grpcauth's credentials sign a random nonce (x-iamtoken-nonce) into every
// call so that they do not. A client that signs no nonce must not send
// identical calls within a second to a server with this option.
func WithAccessKeyReplayProtection(capacity int) AccessKeyVerifierOption {
	return func(o *accessKeyVerifierOptions) error {
		if capacity <= 0 {
			return fmt.Errorf("interceptors: WithAccessKeyReplayProtection: capacity %d must be positive", capacity)
		}
		o.replayCapacity = capacity
		return nil
	}
}

// NewAccessKeyVerifier returns a verifier of SigV4-signed calls whose keys
// are looked up in store.
func NewAccessKeyVerifier(store AccessKeyStore, opts ...AccessKeyVerifierOption) (*SigV4Verifier, error) {
	if store == nil {
		return nil, errors.New("interceptors: NewAccessKeyVerifier: nil AccessKeyStore")
	}
	o := accessKeyVerifierOptions{
		region:  DefaultAccessKeyRegion,
		service: DefaultAccessKeyService,
		now:     time.Now,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	v := &SigV4Verifier{store: store, region: o.region, service: o.service, now: o.now, keys: newSigningKeyCache()}
	if o.replayCapacity > 0 {
		v.replay = newReplayCache(o.replayCapacity)
	}
	return v, nil
}

// Status messages. The refusals that involve the secret share one message.
const (
	msgAccessKeyMismatch    = "interceptors: access-key signature does not match"
	msgAccessKeyGotIAMToken = "interceptors: this method takes an access-key signature (AWS4-HMAC-SHA256), not an IAM token"
)

func accessKeyRefused(msg string) error { return status.Error(codes.Unauthenticated, msg) }

// VerifyAccessKey checks the signature of a call to fullMethod on authority
// carrying md, and answers the key's service account. Errors are gRPC status
// errors: Unauthenticated for any bad or missing signature, Unavailable when
// the store fails or the replay cache is full.
func (v *SigV4Verifier) VerifyAccessKey(ctx context.Context, fullMethod, authority string, md metadata.MD) (*Principal, error) {
	auths := md[sigV4MDAuthorization]
	switch {
	case len(auths) == 0:
		return nil, accessKeyRefused("interceptors: access-key signature required: no authorization metadata")
	case len(auths) > 1:
		return nil, accessKeyRefused("interceptors: more than one authorization value")
	}
	if !strings.HasPrefix(auths[0], sigV4Algorithm+" ") {
		if looksLikeBearer(auths[0]) {
			return nil, accessKeyRefused(msgAccessKeyGotIAMToken)
		}
		return nil, accessKeyRefused("interceptors: authorization is not an AWS4-HMAC-SHA256 signature")
	}
	a, err := parseSigV4Authorization(auths[0])
	if err != nil {
		return nil, accessKeyRefused(err.Error())
	}
	if a.Region != v.region || a.Service != v.service {
		return nil, accessKeyRefused("interceptors: access-key signature: credential scope region or service is not this server's")
	}
	if !sigv4rules.ValidPath(fullMethod) {
		return nil, accessKeyRefused("interceptors: access-key signature: method name has characters that cannot be signed")
	}
	host := canonicalHost(authority)
	if host == "" || !validCanonicalValue(host) {
		return nil, accessKeyRefused("interceptors: access-key signature: call has no usable authority")
	}

	reqTime, err := v.checkHeaders(a, md)
	if err != nil {
		return nil, err
	}

	key, err := v.store.LookupAccessKey(ctx, a.KeyID)
	switch {
	case errors.Is(err, ErrAccessKeyNotFound):
		return nil, accessKeyRefused(msgAccessKeyMismatch)
	case err != nil:
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, status.FromContextError(ctxErr).Err()
		}
		// The store's error may name internals; it is not the caller's to see.
		return nil, status.Error(codes.Unavailable, "interceptors: access key store unavailable")
	case key == nil || !key.Active || key.KeyID != a.KeyID:
		return nil, accessKeyRefused(msgAccessKeyMismatch)
	}

	var toSignBuf [256]byte
	toSign := sigV4StringToSign(toSignBuf[:0], fullMethod, md[sigV4MDDate][0], a, func(name string) string {
		if name == sigV4Host {
			return host
		}
		return md[name][0]
	})
	want := sigV4Signature(v.keys.get(key.KeyID, key.Secret, a.Date, a.Region, a.Service), toSign)
	if !hmac.Equal(want[:], a.Signature[:]) {
		return nil, accessKeyRefused(msgAccessKeyMismatch)
	}

	expires := reqTime.Add(AccessKeySignatureWindow)
	if v.replay != nil {
		if err := v.replay.add(a.Signature, expires, v.now()); err != nil {
			return nil, err
		}
	}
	if rec, ok := v.store.(AccessKeyUseRecorder); ok {
		_ = rec.RecordAccessKeyUse(ctx, key.KeyID, v.now()) // bookkeeping; see AccessKeyUseRecorder
	}
	return &Principal{
		SubjectID:   key.ServiceAccountID,
		SubjectType: SubjectServiceAccount,
		Method:      AuthAccessKey,
		AccessKeyID: key.KeyID,
		ExpiresAt:   expires,
	}, nil
}

// checkHeaders checks the signed header list against md and the date against
// the clock, and returns the request time.
func (v *SigV4Verifier) checkHeaders(a *sigV4Authorization, md metadata.MD) (time.Time, error) {
	var hasHost, hasDate bool
	for _, name := range a.Headers {
		switch name {
		case sigV4Host:
			hasHost = true
			continue
		case sigV4MDDate:
			hasDate = true
		case sigV4MDAuthorization:
			return time.Time{}, accessKeyRefused("interceptors: access-key signature: authorization cannot be a signed header")
		}
		vals := md[name]
		if len(vals) != 1 {
			return time.Time{}, accessKeyRefused(fmt.Sprintf("interceptors: access-key signature: signed header %q must be sent exactly once", name))
		}
		if !validCanonicalValue(vals[0]) {
			return time.Time{}, accessKeyRefused(fmt.Sprintf("interceptors: access-key signature: signed header %q is not printable ASCII or has surrounding or repeated spaces", name))
		}
	}
	if !hasHost || !hasDate {
		return time.Time{}, accessKeyRefused("interceptors: access-key signature: host and x-amz-date must be signed")
	}
	for k := range md {
		if len(k) >= len(sigV4AmzPrefix) && strings.EqualFold(k[:len(sigV4AmzPrefix)], sigV4AmzPrefix) && !signedHeadersHave(a.Headers, k) {
			return time.Time{}, accessKeyRefused("interceptors: access-key signature: x-amz-* metadata sent but not signed")
		}
	}
	if _, ok := md[sigV4MDSecurityToken]; ok {
		return time.Time{}, accessKeyRefused("interceptors: access-key signature: session tokens (x-amz-security-token) are not supported")
	}
	if vals, ok := md[sigV4MDContentSHA256]; ok && (len(vals) != 1 || vals[0] != unsignedPayload) {
		return time.Time{}, accessKeyRefused("interceptors: access-key signature: x-amz-content-sha256 must be UNSIGNED-PAYLOAD")
	}

	reqTime, ok := parseAmzDate(md[sigV4MDDate][0])
	if !ok {
		return time.Time{}, accessKeyRefused("interceptors: access-key signature: x-amz-date is not YYYYMMDDTHHMMSSZ")
	}
	// The value formats back to itself (parseAmzDate), so its first eight
	// characters are its date.
	if md[sigV4MDDate][0][:len(sigV4DateFormat)] != a.Date {
		return time.Time{}, accessKeyRefused("interceptors: access-key signature: credential scope date is not x-amz-date's date")
	}
	if skew := v.now().Sub(reqTime); skew > AccessKeySignatureWindow || skew < -AccessKeySignatureWindow {
		return time.Time{}, accessKeyRefused("interceptors: access-key signature: x-amz-date is more than 15 minutes from the server's clock")
	}
	return reqTime, nil
}

// signs reports whether the sorted list headers holds name (any case).
func signedHeadersHave(headers []string, name string) bool {
	for _, h := range headers {
		if h == name || strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// isBearer reports whether v is a bearer credential ("Bearer <token>", any
// case), which is an IAM token sent to the wrong kind of method.
func looksLikeBearer(v string) bool {
	return len(v) >= 7 && strings.EqualFold(v[:7], "bearer ")
}
