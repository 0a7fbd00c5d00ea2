package bench

import (
	"context"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsv4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/aws-http-auth/credentials"
	"github.com/aws/smithy-go/aws-http-auth/sigv4"
	smithyv4 "github.com/aws/smithy-go/aws-http-auth/v4"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/iamtoken/iamtoken-go/grpcauth"
	"github.com/iamtoken/iamtoken-go/interceptors"
	demov1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/demo/v1"
)

// Access-key (SigV4) verification: our verifier against the way a server
// would check a signature with a signer library, re-signing a synthetic
// request built from the metadata and comparing. And a cross-check that our
// client and verifier agree with aws-sdk-go-v2's signer, a second SigV4
// implementation independent of the one our client uses (smithy-go).

const (
	akBenchKeyID     = "YCAJEbenchkey0001"
	akBenchSecret    = "YCbenchsecret-not-a-real-one-0123456789"
	akBenchSA        = "ajebenchserviceacct1"
	akBenchAuthority = "storage.example:8443"
	akBenchMethod    = demov1.StorageService_PutObject_FullMethodName
)

var akBenchNow = time.Date(2026, 12, 4, 20, 30, 0, 0, time.UTC)

type akBenchStore struct{ key *interceptors.AccessKey }

func (s akBenchStore) LookupAccessKey(_ context.Context, keyID string) (*interceptors.AccessKey, error) {
	if keyID != s.key.KeyID {
		return nil, interceptors.ErrAccessKeyNotFound
	}
	return s.key, nil
}

func akBenchVerifier(tb testing.TB) *interceptors.SigV4Verifier {
	tb.Helper()
	v, err := interceptors.NewAccessKeyVerifier(
		akBenchStore{&interceptors.AccessKey{KeyID: akBenchKeyID, Secret: []byte(akBenchSecret), ServiceAccountID: akBenchSA, Active: true}},
		interceptors.WithAccessKeyClock(func() time.Time { return akBenchNow }))
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func akBenchCreds(tb testing.TB) *grpcauth.AccessKeyCredentials {
	tb.Helper()
	c, err := grpcauth.NewAccessKeyCredentials(akBenchKeyID, akBenchSecret,
		grpcauth.WithAccessKeyClock(func() time.Time { return akBenchNow }))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func akBenchCallContext() context.Context {
	return grpccreds.NewContextWithRequestInfo(context.Background(), grpccreds.RequestInfo{
		Method:   akBenchMethod,
		AuthInfo: grpccreds.TLSInfo{CommonAuthInfo: grpccreds.CommonAuthInfo{SecurityLevel: grpccreds.PrivacyAndIntegrity}},
	})
}

const akBenchAudience = "https://" + akBenchAuthority + "/iamtoken.demo.v1.StorageService"

// akBenchSigned is the metadata of a call signed by our client.
func akBenchSigned(tb testing.TB) metadata.MD {
	tb.Helper()
	m, err := akBenchCreds(tb).GetRequestMetadata(akBenchCallContext(), akBenchAudience)
	if err != nil {
		tb.Fatal(err)
	}
	return metadata.New(m)
}

// requestFromMD rebuilds the synthetic request a signer library signs, from
// a call's metadata: every header but authorization.
func requestFromMD(md metadata.MD) *http.Request {
	h := make(http.Header, len(md))
	for k, vs := range md {
		if k != "authorization" {
			h[http.CanonicalHeaderKey(k)] = vs
		}
	}
	return &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "https", Host: akBenchAuthority, Path: akBenchMethod},
		Host:   akBenchAuthority,
		Header: h,
	}
}

// awsSDKSign signs a request with aws-sdk-go-v2's signer at akBenchNow and
// returns the Authorization value. It signs every header the request has.
func awsSDKSign(tb testing.TB, signer *awsv4.Signer, req *http.Request) string {
	err := signer.SignHTTP(context.Background(),
		aws.Credentials{AccessKeyID: akBenchKeyID, SecretAccessKey: akBenchSecret},
		req, "UNSIGNED-PAYLOAD", interceptors.DefaultAccessKeyService, interceptors.DefaultAccessKeyRegion, akBenchNow)
	if err != nil {
		tb.Fatal(err)
	}
	return req.Header.Get("Authorization")
}

// TestAccessKeyMatchesAWSSDK: aws-sdk-go-v2's signer, given the headers our
// client sent, computes the same Authorization; and a call it signs by
// itself passes our verifier.
func TestAccessKeyMatchesAWSSDK(t *testing.T) {
	md := akBenchSigned(t)
	if got, want := awsSDKSign(t, awsv4.NewSigner(), requestFromMD(md)), md.Get("authorization")[0]; got != want {
		t.Errorf("aws-sdk-go-v2 Authorization\n got %q\nwant %q (our client)", got, want)
	}

	req := &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "https", Host: akBenchAuthority, Path: akBenchMethod},
		Host:   akBenchAuthority,
		Header: http.Header{"X-Amz-Content-Sha256": {"UNSIGNED-PAYLOAD"}, "X-Amz-Meta-Purpose": {"cross check"}},
	}
	auth := awsSDKSign(t, awsv4.NewSigner(), req)
	sdkMD := metadata.MD{"authorization": {auth}}
	for k, vs := range req.Header {
		if k != "Authorization" && k != "Host" {
			sdkMD[strings.ToLower(k)] = vs
		}
	}
	p, err := akBenchVerifier(t).VerifyAccessKey(context.Background(), akBenchMethod, akBenchAuthority, sdkMD)
	if err != nil {
		t.Fatalf("our verifier refused aws-sdk-go-v2's signature: %v", err)
	}
	if p.AccessKeyID != akBenchKeyID || p.SubjectID != akBenchSA {
		t.Errorf("Principal = %+v", p)
	}
}

// BenchmarkAccessKeyVerify measures checking one signed call. The library
// rows are what a server built on a signer library would do instead:
// rebuild a request from the metadata, re-sign it, compare.
func BenchmarkAccessKeyVerify(b *testing.B) {
	md := akBenchSigned(b)
	want := md.Get("authorization")[0]
	ctx := context.Background()

	b.Run("iamtoken", func(b *testing.B) {
		v := akBenchVerifier(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.VerifyAccessKey(ctx, akBenchMethod, akBenchAuthority, md); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("aws-sdk-go-v2-resign", func(b *testing.B) {
		signer := awsv4.NewSigner()
		b.ReportAllocs()
		for b.Loop() {
			got := awsSDKSign(b, signer, requestFromMD(md))
			if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				b.Fatal("mismatch")
			}
		}
	})
	b.Run("smithy-go-resign", func(b *testing.B) {
		signer := sigv4.New(func(o *smithyv4.SignerOptions) {
			o.HeaderRules = allHeaders{}
		})
		b.ReportAllocs()
		for b.Loop() {
			req := requestFromMD(md)
			err := signer.SignRequest(&sigv4.SignRequestInput{
				Request:     req,
				PayloadHash: smithyv4.UnsignedPayload(),
				Credentials: credentials.Credentials{AccessKeyID: akBenchKeyID, SecretAccessKey: akBenchSecret},
				Service:     interceptors.DefaultAccessKeyService,
				Region:      interceptors.DefaultAccessKeyRegion,
				Time:        akBenchNow,
			})
			if err != nil {
				b.Fatal(err)
			}
			if subtle.ConstantTimeCompare([]byte(req.Header.Get("Authorization")), []byte(want)) != 1 {
				b.Fatal("mismatch")
			}
		}
	})
}

// BenchmarkAccessKeySign measures the client's per-call signing.
func BenchmarkAccessKeySign(b *testing.B) {
	c := akBenchCreds(b)
	ctx := akBenchCallContext()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetRequestMetadata(ctx, akBenchAudience); err != nil {
			b.Fatal(err)
		}
	}
}

// allHeaders signs every header, like aws-sdk-go-v2.
type allHeaders struct{}

func (allHeaders) IsSigned(h string) bool { return h != "authorization" }
