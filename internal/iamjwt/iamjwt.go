// Package iamjwt holds the format of an IAM token, shared by the issuer that
// signs it and the interceptors that verify it.
//
// An IAM token is a compact JWS (a JWT) with header `alg`, `typ: JWT` and
// `kid` (the issuer's signing key), and claims:
//
//	iss       the issuer (Issuer by default)
//	sub       the subject ID
//	sub_type  service_account, user_account or federated_user
//	aud       the audience (Audience by default)
//	iat, exp  issue and expiry time; exp - iat <= MaxLifetime
//	jti       the token ID, for revocation
package iamjwt

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// Issuer is the default `iss` of IAM tokens.
	Issuer = "https://iam.iamtoken.dev"
	// Audience is the default `aud` of IAM tokens: every service's API.
	Audience = "iamtoken-api"
	// MaxLifetime is the longest an IAM token may live.
	MaxLifetime = 12 * time.Hour
	// ReferenceTokenURL is the reference deployment's token URL, the audience
	// of the JWTs service accounts sign for the exchange.
	ReferenceTokenURL = "https://iam.api.cloud.yandex.net/iam/v1/tokens"
)

// Subject types, the values of the sub_type claim.
const (
	SubjectServiceAccount = "service_account"
	SubjectUserAccount    = "user_account"
	SubjectFederatedUser  = "federated_user"
)

// Claims are an IAM token's claims.
type Claims struct {
	jwt.RegisteredClaims
	SubjectType string `json:"sub_type,omitempty"`
}
