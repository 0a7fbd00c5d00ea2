package iamserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// maxExchangeBodySize caps the REST exchange's request body: the JWT cap
// plus room for the JSON around it.
const maxExchangeBodySize = MaxExchangeJWTSize + 1024

// jwksMaxAge is how long clients may cache the JWKS. It is short next to the
// rotation interval, and validators refetch on an unknown kid anyway.
const jwksMaxAge = 5 * time.Minute

// exchangeRequest is the REST exchange's body: {"jwt": …} or
// {"yandexPassportOauthToken": …}, the reference deployment's names.
type exchangeRequest struct {
	JWT        *string
	OAuthToken *string
}

// exchangeResponse is the REST exchange's answer.
type exchangeResponse struct {
	IAMToken  string `json:"iamToken"`
	ExpiresAt string `json:"expiresAt"`
}

// errorResponse is the body of every REST error.
type errorResponse struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// parseExchangeRequest parses the REST exchange's body strictly: one JSON
// object whose members are exactly one of "jwt" or
// "yandexPassportOauthToken" (names matched case-sensitively, each at most
// once, a string value), and nothing after it. encoding/json alone would
// match names case-insensitively and let a repeated name win silently. It
// never echoes the body in its errors.
func parseExchangeRequest(body []byte) (exchangeRequest, error) {
	bad := func(problem string) (exchangeRequest, error) {
		return exchangeRequest{}, fmt.Errorf("%w: %s", ErrInvalidRequest, problem)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return bad("body is not a JSON object")
	}
	var req exchangeRequest
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("body is not a JSON object")
		}
		name, _ := tok.(string)
		var dst **string
		switch name {
		case "jwt":
			dst = &req.JWT
		case "yandexPassportOauthToken":
			dst = &req.OAuthToken
		default:
			return bad("unknown field (want jwt or yandexPassportOauthToken)")
		}
		if *dst != nil {
			return bad("field " + name + " repeated")
		}
		tok, err = dec.Token()
		v, isString := tok.(string)
		if err != nil || !isString {
			return bad("field " + name + " is not a string")
		}
		*dst = &v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return bad("body is not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("trailing data after the JSON object")
	}
	if (req.JWT == nil) == (req.OAuthToken == nil) {
		return bad("exactly one of jwt or yandexPassportOauthToken is required")
	}
	return req, nil
}

// HTTPHandler serves the REST token exchange (POST TokenPath) and the key
// set (GET JWKSPath). Mount it at the issuer's base URL.
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TokenPath, s.serveExchange)
	mux.HandleFunc(JWKSPath, s.serveJWKS)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, errorResponse{Code: code, Message: msg})
}

func (s *Server) serveExchange(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "iamserver: use POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "iamserver: Content-Type must be application/json")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExchangeBodySize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("iamserver: body larger than %d bytes", maxExchangeBodySize))
			return
		}
		writeError(w, http.StatusBadRequest, "iamserver: cannot read the body")
		return
	}
	req, err := parseExchangeRequest(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var tok IssuedToken
	if req.JWT != nil {
		tok, err = s.ExchangeJWT(r.Context(), *req.JWT)
	} else {
		tok, err = s.ExchangeOAuthToken(r.Context(), *req.OAuthToken)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrInvalidRequest):
			writeError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, ErrInvalidCredentials):
			writeError(w, http.StatusUnauthorized, err.Error())
		default:
			_ = s.internal(err)
			writeError(w, http.StatusInternalServerError, "iamserver: internal error")
		}
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, exchangeResponse{IAMToken: tok.Value, ExpiresAt: tok.ExpiresAt.UTC().Format(time.RFC3339Nano)})
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "iamserver: use GET")
		return
	}
	ks := s.keys.Load()
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(jwksMaxAge.Seconds())))
	h.Set("ETag", ks.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && match == ks.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(ks.jwks)
	}
}
