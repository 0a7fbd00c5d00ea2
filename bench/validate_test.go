package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/iamtoken/iamtoken-go/interceptors"
)

// The default iss and aud of IAM tokens (internal/iamjwt, which this module
// cannot import).
const (
	iamIssuer   = "https://iam.iamtoken.dev"
	iamAudience = "iamtoken-api"
)

// iamSigner signs IAM tokens with one algorithm, as the issuer does.
type iamSigner struct {
	alg    string
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
}

func newIAMSigner(b *testing.B, alg string) iamSigner {
	b.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		b.Fatalf("no key for %s", alg)
	}
	if err != nil {
		b.Fatal(err)
	}
	return iamSigner{alg: alg, kid: "key-" + alg, method: jwt.GetSigningMethod(alg), priv: priv}
}

// token returns a valid IAM token with token ID jti.
func (s iamSigner) token(b *testing.B, jti string) string {
	b.Helper()
	now := time.Now()
	t := jwt.NewWithClaims(s.method, jwt.MapClaims{
		"iss": iamIssuer, "sub": "ajeSA1234567890abcdef", "sub_type": "service_account",
		"aud": iamAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": jti,
	})
	t.Header["kid"] = s.kid
	signed, err := t.SignedString(s.priv)
	if err != nil {
		b.Fatal(err)
	}
	return signed
}

func (s iamSigner) keys() map[string]crypto.PublicKey {
	return map[string]crypto.PublicKey{s.kid: s.priv.Public()}
}

func newBenchValidator(b *testing.B, s iamSigner, opts ...interceptors.Option) *interceptors.Validator {
	b.Helper()
	v, err := interceptors.NewValidator(append([]interceptors.Option{
		interceptors.WithStaticKeys(s.keys()),
		interceptors.WithAlgorithms(interceptors.SupportedAlgorithms()...),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { v.Close() })
	return v
}

// BenchmarkValidate measures Validator.Validate: a cache hit (one goroutine
// and all cores), and the full check of a token for every supported
// algorithm, next to a plain jwt.Parse of the same ES256 token.
func BenchmarkValidate(b *testing.B) {
	ctx := context.Background()
	es := newIAMSigner(b, "ES256")

	b.Run("cached", func(b *testing.B) {
		v := newBenchValidator(b, es)
		tok := es.token(b, "t-1")
		if _, err := v.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Validate(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		v := newBenchValidator(b, es)
		toks := make([]string, 64)
		for i := range toks {
			toks[i] = es.token(b, fmt.Sprint("t-", i))
			if _, err := v.Validate(ctx, toks[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := v.Validate(ctx, toks[i&63]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	for _, alg := range interceptors.SupportedAlgorithms() {
		b.Run("uncached-"+alg, func(b *testing.B) {
			s := newIAMSigner(b, alg)
			v := newBenchValidator(b, s, interceptors.WithCacheSize(0))
			tok := s.token(b, "t-1")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Validate(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("naive-jwt-ES256", func(b *testing.B) {
		tok := es.token(b, "t-1")
		parser := naiveParser()
		keyfunc := func(*jwt.Token) (any, error) { return es.priv.Public(), nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parser.Parse(tok, keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// naiveParser is how a hand-written AuthFunc usually checks a token: one
// jwt.Parse per call, with the checks people remember.
func naiveParser() *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(iamIssuer),
		jwt.WithAudience(iamAudience),
		jwt.WithExpirationRequired(),
	)
}
