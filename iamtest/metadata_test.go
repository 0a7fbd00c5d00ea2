package iamtest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iamtoken/iamtoken-go/iamtest"
)

func get(t *testing.T, client *http.Client, method, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestMetadataServerAnswer(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	md.SetToken("t1.vm", 90*time.Second)

	code, body := get(t, client, "GET", md.URL(), map[string]string{"Metadata-Flavor": "Google"})
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"access_token": "t1.vm", "expires_in": float64(90), "token_type": "Bearer"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
}

func TestMetadataServerWireChecks(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	base := strings.TrimSuffix(md.URL(), iamtest.MetadataTokenPath)
	flavor := map[string]string{"Metadata-Flavor": "Google"}

	get(t, client, "GET", md.URL(), nil)
	get(t, client, "GET", md.URL(), map[string]string{"Metadata-Flavor": "google-ish"})
	get(t, client, "POST", md.URL(), flavor)
	get(t, client, "GET", base+"/computeMetadata/v1/instance/service-accounts/other/token", flavor)
	get(t, client, "GET", md.URL()+"?scopes=x", flavor)
	get(t, client, "GET", md.URL(), map[string]string{"Metadata-Flavor": "Google", "Authorization": "Bearer x"})
	want := []string{
		"header Metadata-Flavor is not exactly Google",
		"header Metadata-Flavor is not exactly Google",
		"method POST, want GET",
		`path "/computeMetadata/v1/instance/service-accounts/other/token", want "/computeMetadata/v1/instance/service-accounts/default/token"`,
		"unexpected query string",
		"request carries an Authorization header",
	}
	if diff := cmp.Diff(want, md.BadRequests()); diff != "" {
		t.Errorf("BadRequests (-want +got):\n%s", diff)
	}
	if md.Calls() != len(want) {
		t.Errorf("Calls = %d, want %d", md.Calls(), len(want))
	}
}

func TestMetadataServerFailures(t *testing.T) {
	md := iamtest.NewMetadataServer()
	defer md.Close()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	flavor := map[string]string{"Metadata-Flavor": "Google"}

	md.FailNext(2, http.StatusTooManyRequests)
	for i, want := range []int{429, 429, 200} {
		if code, _ := get(t, client, "GET", md.URL(), flavor); code != want {
			t.Errorf("call %d: status %d, want %d", i, code, want)
		}
	}
	md.SetNotFound(true)
	if code, _ := get(t, client, "GET", md.URL(), flavor); code != 404 {
		t.Errorf("SetNotFound: status %d, want 404", code)
	}
	md.SetNotFound(false)
	md.SetAnswer([]byte(`{"nope"`))
	if code, body := get(t, client, "GET", md.URL(), flavor); code != 200 || body != `{"nope"` {
		t.Errorf("SetAnswer: %d %q", code, body)
	}
	md.SetAnswer(nil)
	if code, body := get(t, client, "GET", md.URL(), flavor); code != 200 || !strings.Contains(body, "access_token") {
		t.Errorf("SetAnswer(nil): %d %q", code, body)
	}
}

func TestMetadataServerCloseEndsDelayedAnswers(t *testing.T) {
	md := iamtest.NewMetadataServer()
	md.SetDelay(time.Hour)
	client := &http.Client{}
	defer client.CloseIdleConnections()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", md.URL(), nil)
		req.Header.Set("Metadata-Flavor", "Google")
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for md.Calls() == 0 {
		time.Sleep(time.Millisecond)
	}
	md.Close()
	if err := <-errc; err == nil {
		t.Fatal("a delayed request got an answer after Close, want the connection dropped")
	}
}
