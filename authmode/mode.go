package authmode

import authv1 "github.com/iamtoken/iamtoken-go/proto/iamtoken/auth/v1"

// Mode is the kind of credential a method accepts.
type Mode uint8

const (
	// IAMToken methods take a bearer IAM token. It is the mode of every method
	// that declares none.
	IAMToken Mode = iota + 1
	// AccessKey methods take a call signed with a static access key (AWS
	// Signature Version 4). AWS-compatible services accept nothing else.
	AccessKey
	// None methods take no credentials.
	None
)

// String returns the mode's name as the proto enum spells it.
func (m Mode) String() string {
	switch m {
	case IAMToken:
		return "IAM_TOKEN"
	case AccessKey:
		return "ACCESS_KEY"
	case None:
		return "NONE"
	default:
		return "UNKNOWN"
	}
}

// fromProto maps a declared mode; ok is false for AUTH_MODE_UNSPECIFIED and for
// values this version does not know, which fall through to the next level.
func fromProto(m authv1.AuthMode) (mode Mode, ok bool) {
	switch m {
	case authv1.AuthMode_AUTH_MODE_IAM_TOKEN:
		return IAMToken, true
	case authv1.AuthMode_AUTH_MODE_ACCESS_KEY:
		return AccessKey, true
	case authv1.AuthMode_AUTH_MODE_NONE:
		return None, true
	default:
		return 0, false
	}
}
