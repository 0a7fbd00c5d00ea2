package grpcauth

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// fuzzTestKeyPEM is an RSA 2048 key generated for this test alone; it
// authorizes nothing.
const fuzzTestKeyPEM = `-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCt2j6meRfGuPTT
edML5nyGR9JOV8kzySplOXpsMgSO0BcyW3nNuV068fqyURGV/J6eqOkGZTzSixst
uZNToG9987Tj+hUrPykTF4GQpaaWN7nyo2YNO6bQaKQ+bhS6qKoDoHHuZU8TsNlv
7uZDawgTfnrctwCAynKxJZPH83EATwRxN3Htk585uP1IdRkzqaflCBRPL8WRn+KS
QuY3uiUIRauqfr2IJNaqz9rT2LX3kqz4zFDViMhVcb96pIumyu0Q3Vl1KXerOaGh
NGyQpau17YXKPvdA+kmh4W/TdYBSdKDWalcGitpUEGkRhPFbFjtQWKfnPFQCSxsL
VG0Tpi+TAgMBAAECggEAEUgd7N53W+xhf0Qfk+dC1EuqFC+VyJgOptFNN27MFTDf
nW81GcYmBl4CKweeqpIvZ7DSuS1ccRwdhNtq/GfOWBmJub/PquTfEw7FymMtFBxQ
rQChJwpETXiZcGXw7ufP6VxhoZkLK0yWe2dRbGePU0tssH6122zvHxI6hn3PQIBw
U1YMznFh4k3mjMamkObIbYtqMjieReq7qeXMq6ErIXcU9vhhfA3pOwZThIFwTCzA
x/p0o9uVfyt5FLVzUJi6Qc+WFX1dk/l7vRro8uv5fWnBEHkaMtJKIkGDepxNcu+T
W8hO25YeGt+hWupNB2maxXHPI/0YNirj0PsaRBQswQKBgQDINkh35Eyjgw5C5jgw
BMI6IrfN7XYb0vAYE/lpXT62pYHLbnk+1ujJRXnbv409zyxZlJ3bXHVMMdk4QySo
aDyoLdwrMlxKFyJdR+tGDkzRr6psVHkB7qxJLEjHzUnTF3mAbVgGWrYtq8ud+Xy7
p1U8LByU38/MkoL24VenQxzU9wKBgQDeS6ioVWzncvtHAqzna13koSdq1iPmXt6s
p++HsgN/DG/KuXQiaIjdXZlUDovUrPgaMzj3RKw23rYRotyFOGyFBdO00gR9sIaQ
ey+NtPny6OYAbsWky0O/T7qXnqXA9e/gW2jfPbYdREi2xQAJ1Tw/aiic6c/PFsx2
5nDbOUg/RQKBgEij+VMWj//bcvcu1EAH2fiB1DJw76NUuyvhQ2LJJBHcpuUKZg84
pikwffAO5c4BNtQhqcyHFT/Z7jgNlGVNvIRAb1t04Cs5jYxOpbw7P//sPmcjluvu
jq/V02o6v4hJQhookgFsNCEJ7cyZUno7Uh+M2aniMmDE36N3Svgyz2ktAoGAB7I8
458ZhyXe90VrcROxi4Hc2IETex1bvkSOMXeDUXm/wRgMokhWPLvJ3DQouTNH37hY
R49UGw445YFq+x3J/A0ImGERELz027m4GsLiSHuxwuAS7bKv5MbA4hD3EigxpuXj
Sp9bV8YOcm19o9mDHXrybwRVUokqiQ9PZvejvbUCgYAuiT3aQtiN7Xb/9waQjyKX
p9cbliznjMgOOQ9Osv5LiE7mZJcU7ndIXfc+pf6F0Oeb06jHjlAimflQ16BON2MU
orINymeZs/B67ocbfUq2Zj52M+rbIBOkgRW997IXrHM8bOzhf0eabEEisFAx1xJd
0iiQJAFM+otUVG45kE212A==
-----END PRIVATE KEY-----
`

// fuzzNow is the fixed clock of the answer fuzz targets.
var fuzzNow = time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)

// FuzzServiceAccountKeyFromBytes feeds the key file parser arbitrary input:
// it must not panic, must accept only usable keys, and its errors must not
// repeat any of the private key's PEM body.
func FuzzServiceAccountKeyFromBytes(f *testing.F) {
	// Key generation is far too slow under the fuzzer's instrumentation, so
	// the seeds use a fixed key made for this test alone.
	block, _ := pem.Decode([]byte(fuzzTestKeyPEM))
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		f.Fatal(err)
	}
	priv := parsed.(*rsa.PrivateKey)
	privPEM := fuzzTestKeyPEM
	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	seed := func(fields map[string]any) {
		b, _ := json.Marshal(fields)
		f.Add(b)
	}
	seed(map[string]any{"id": "k", "service_account_id": "sa", "key_algorithm": "RSA_2048", "created_at": "2026-01-01T00:00:00Z",
		"public_key": pubPEM, "private_key": "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <k>\n" + privPEM})
	seed(map[string]any{"id": "k", "serviceAccountId": "sa", "keyAlgorithm": "RSA_2048", "privateKey": privPEM})
	seed(map[string]any{"id": "k", "user_account_id": "u", "private_key": privPEM})
	seed(map[string]any{"id": "k", "service_account_id": "sa", "private_key": strings.Replace(privPEM, "PRIVATE KEY", "RSA PRIVATE KEY", 2)})
	seed(map[string]any{"id": "k", "service_account_id": "sa", "private_key": privPEM[:len(privPEM)/2]})
	f.Add([]byte(`{"id":"k","service_account_id":"sa","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`))
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(``))

	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ServiceAccountKeyFromBytes(data)
		if err != nil {
			if k != nil {
				t.Fatal("a key and an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "grpcauth: ") || len(msg) > 1024 {
				t.Fatalf("error %q: want a bounded message starting with the package name", msg)
			}
			var fields map[string]any
			if json.Unmarshal(data, &fields) == nil {
				for _, name := range []string{"private_key", "privateKey"} {
					v, _ := fields[name].(string)
					for _, line := range strings.Split(v, "\n") {
						if len(line) >= 24 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line[:24]) {
							t.Fatalf("error %q repeats private key text", msg)
						}
					}
				}
			}
			return
		}
		if checkID("id", k.ID) != nil || checkID("account", k.ServiceAccountID) != nil {
			t.Fatalf("accepted a key with bad IDs: %v", k)
		}
		if bits := k.PublicKey().N.BitLen(); bits != 2048 && bits != 4096 {
			t.Fatalf("accepted an RSA key of %d bits", bits)
		}
		if s := k.String(); strings.Contains(s, "PRIVATE") {
			t.Fatalf("String %q shows the key", s)
		}
	})
}

// checkAnswer is the property both answer fuzz targets share: a token that
// is accepted is usable and not past MaxLifetime; an error does not repeat
// the token.
func checkAnswer(t *testing.T, tok *Token, err error, tokenValue string) {
	t.Helper()
	if err != nil {
		if tok != nil {
			t.Fatal("a token and an error")
		}
		if len(tokenValue) >= 8 && strings.Contains(err.Error(), tokenValue) {
			t.Fatalf("error %q repeats the token", err)
		}
		return
	}
	if checkTokenValue(tok.Value) != nil {
		t.Fatalf("accepted a token that cannot be sent: %q", tok.Value)
	}
	if !tok.Expiry.After(fuzzNow) || tok.Expiry.After(fuzzNow.Add(MaxLifetime)) {
		t.Fatalf("accepted an expiry %v outside (now, now+MaxLifetime]", tok.Expiry)
	}
	if !tok.Obtained.Equal(fuzzNow) {
		t.Fatalf("Obtained %v, want now", tok.Obtained)
	}
}

// FuzzParseMetadataAnswer feeds the metadata (and function context) answer
// parser arbitrary input.
func FuzzParseMetadataAnswer(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"t1.abc","expires_in":3600,"token_type":"Bearer"}`,
		`{"access_token":"t1.abc","expires_in":43201}`,
		`{"access_token":"t1.abc","expires_in":0}`,
		`{"access_token":"t1.abc","expires_in":1e3}`,
		`{"access_token":"t1.abc","expires_in":"60"}`,
		`{"access_token":"t1 abc","expires_in":60}`,
		`{"access_token":null,"expires_in":null}`,
		`{"access_token":"t1.abc","expires_in":60,"token_type":"mac"}`,
		`{"access_token":"t1.abc","expires_in":60}garbage`,
		`[1]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseMetadataAnswer(data, fuzzNow)
		var a struct {
			V string `json:"access_token"`
		}
		json.Unmarshal(data, &a)
		checkAnswer(t, tok, err, a.V)
	})
}

// FuzzParseRESTAnswer feeds the REST exchange answer parser arbitrary
// input.
func FuzzParseRESTAnswer(f *testing.F) {
	for _, s := range []string{
		`{"iamToken":"t1.abc","expiresAt":"2026-12-05T08:00:00Z"}`,
		`{"iamToken":"t1.abc","expiresAt":"2026-12-05T08:00:00.123456789+03:00"}`,
		`{"iamToken":"t1.abc","expiresAt":"2030-01-01T00:00:00Z"}`,
		`{"iamToken":"t1.abc","expiresAt":"2020-01-01T00:00:00Z"}`,
		`{"iamToken":"t1.abc","expiresAt":"tomorrow"}`,
		`{"iamToken":"","expiresAt":"2026-12-05T08:00:00Z"}`,
		`{"iamToken":1,"expiresAt":2}`,
		`{"iamToken":"t1.abc"} {}`,
		`null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := parseRESTAnswer(data, fuzzNow)
		var a struct {
			V string `json:"iamToken"`
		}
		json.Unmarshal(data, &a)
		checkAnswer(t, tok, err, a.V)
	})
}
