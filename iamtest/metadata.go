package iamtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// MetadataTokenPath is the path the metadata service serves the attached
// service account's token on.
const MetadataTokenPath = "/computeMetadata/v1/instance/service-accounts/default/token"

// MetadataServer is a fake VM metadata service. By default it answers every
// well-formed token request with {"access_token": "iamtest-metadata-token",
// "expires_in": 3600, "token_type": "Bearer"}.
type MetadataServer struct {
	srv *httptest.Server
	// closing is closed by Close, ending every delayed answer.
	closing   chan struct{}
	closeOnce sync.Once

	// mu guards everything below.
	mu          sync.Mutex
	token       string
	expiresIn   int64
	status      int    // answer status for every request; 0 answers the token
	rawBody     []byte // answer body instead of the token JSON; nil: the token JSON
	failNext    int    // how many of the next requests get failStatus
	failStatus  int
	delay       time.Duration
	calls       int
	badRequests []string
}

// NewMetadataServer starts a fake metadata service on a loopback port.
func NewMetadataServer() *MetadataServer {
	m := &MetadataServer{
		closing:   make(chan struct{}),
		token:     "iamtest-metadata-token",
		expiresIn: 3600,
	}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	return m
}

// Addr is the server's host:port, the value for YC_METADATA_ADDR.
func (m *MetadataServer) Addr() string { return strings.TrimPrefix(m.srv.URL, "http://") }

// URL is the full token URL.
func (m *MetadataServer) URL() string { return m.srv.URL + MetadataTokenPath }

// SetToken sets the token and the remaining lifetime it is reported with
// (expires_in, in whole seconds).
func (m *MetadataServer) SetToken(token string, expiresIn time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.token, m.expiresIn = token, int64(expiresIn/time.Second)
}

// SetNotFound makes every request answer 404, as the service does on a VM
// with no service account attached; false restores normal answers.
func (m *MetadataServer) SetNotFound(notFound bool) {
	if notFound {
		m.SetStatus(http.StatusNotFound)
	} else {
		m.SetStatus(0)
	}
}

// SetStatus makes every request answer the HTTP status code with an empty
// body; 0 restores normal answers.
func (m *MetadataServer) SetStatus(code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status = code
}

// SetAnswer makes every request answer 200 with body as is, for malformed
// answers; nil restores the token JSON.
func (m *MetadataServer) SetAnswer(body []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rawBody = nil
	if body != nil {
		m.rawBody = append([]byte{}, body...)
	}
}

// FailNext makes the next n requests answer the HTTP status code (e.g. 500,
// 429); the ones after that are answered normally.
func (m *MetadataServer) FailNext(n, code int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext, m.failStatus = n, code
}

// SetDelay makes every answer wait d first, or until the client gives up
// or Close is called.
func (m *MetadataServer) SetDelay(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.delay = d
}

// Calls is the number of requests served, well-formed or not.
func (m *MetadataServer) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// BadRequests describes the requests that broke the wire format (wrong
// method, path or headers), in order. They are answered 400.
func (m *MetadataServer) BadRequests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.badRequests...)
}

// Close stops the server, ending delayed answers first.
func (m *MetadataServer) Close() {
	m.closeOnce.Do(func() { close(m.closing) })
	m.srv.Close()
}

func (m *MetadataServer) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.calls++
	if problem := checkMetadataRequest(r); problem != "" {
		m.badRequests = append(m.badRequests, problem)
		m.mu.Unlock()
		http.Error(w, "iamtest: "+problem, http.StatusBadRequest)
		return
	}
	delay, status, body := m.delay, m.status, m.rawBody
	if m.failNext > 0 {
		m.failNext--
		status = m.failStatus
	}
	if body == nil && status == 0 {
		body, _ = json.Marshal(map[string]any{
			"access_token": m.token,
			"expires_in":   m.expiresIn,
			"token_type":   "Bearer",
		})
	}
	m.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-m.closing:
			// Drop the connection rather than answer 200 with nothing.
			panic(http.ErrAbortHandler)
		}
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// checkMetadataRequest says what is wrong with a token request, or "".
func checkMetadataRequest(r *http.Request) string {
	switch {
	case r.Method != http.MethodGet:
		return fmt.Sprintf("method %s, want GET", r.Method)
	case r.URL.Path != MetadataTokenPath:
		return fmt.Sprintf("path %q, want %q", r.URL.Path, MetadataTokenPath)
	case r.URL.RawQuery != "":
		return "unexpected query string"
	case len(r.Header.Values("Metadata-Flavor")) != 1 || r.Header.Get("Metadata-Flavor") != "Google":
		return "header Metadata-Flavor is not exactly Google"
	case r.Header.Get("Authorization") != "":
		return "request carries an Authorization header"
	case r.ContentLength > 0:
		return "request has a body"
	}
	return ""
}
