package scsstore_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/scsstore"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

var (
	_ scs.Store            = (*scsstore.Store)(nil)
	_ scs.CtxStore         = (*scsstore.Store)(nil)
	_ scs.IterableStore    = (*scsstore.Store)(nil)
	_ scs.IterableCtxStore = (*scsstore.Store)(nil)
)

// TestUpstream runs scs's own tests (its root package, where the
// SessionManager is tested) with scs.New's default store replaced by a
// Store that reaches, through a proxy, the state this process owns: see
// testdata/memstore.go.
func TestUpstream(t *testing.T) {
	sharedstatetest.RunUpstream(t, "github.com/alexedwards/scs/v2", []string{"."},
		map[string]string{"memstore/memstore.go": "testdata/memstore.go"})
}

// TestSessionsShared: a session put by one process's SessionManager is read,
// renewed and destroyed by another's, as two workers behind one port would.
func TestSessionsShared(t *testing.T) {
	owner, proxy := sharedstatetest.Pair(t)
	var servers []*httptest.Server
	for _, st := range []*sharedstate.State{owner, proxy} {
		sm := scs.New()
		sm.Store = scsstore.New(st, "sessions")
		mux := http.NewServeMux()
		mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) { sm.Put(r.Context(), "user", "ada") })
		mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, sm.GetString(r.Context(), "user")) })
		mux.HandleFunc("/renew", func(w http.ResponseWriter, r *http.Request) {
			if err := sm.RenewToken(r.Context()); err != nil {
				t.Error(err)
			}
		})
		mux.HandleFunc("/destroy", func(w http.ResponseWriter, r *http.Request) {
			if err := sm.Destroy(r.Context()); err != nil {
				t.Error(err)
			}
		})
		srv := httptest.NewServer(sm.LoadAndSave(mux))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar}
	get := func(srv *httptest.Server, path string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first, second := servers[0], servers[1]
	get(first, "/put")
	if got := get(second, "/get"); got != "ada" {
		t.Fatalf("the other worker reads %q, want the session's value", got)
	}
	get(second, "/renew")
	if got := get(first, "/get"); got != "ada" {
		t.Fatalf("after a renewal in the other worker: %q", got)
	}
	get(first, "/destroy")
	if got := get(second, "/get"); got != "" {
		t.Fatalf("after Destroy in the other worker: %q", got)
	}
}

// TestExpiry: a session lasts until its expiry and no longer, and one
// committed with an expiry already past is gone.
func TestExpiry(t *testing.T) {
	_, proxy := sharedstatetest.Pair(t)
	s := scsstore.New(proxy, "sessions")
	if err := s.Commit("a", []byte("x"), time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit("b", []byte("y"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := s.Find("a"); err != nil || !ok || string(b) != "x" {
		t.Fatalf("Find(a) = %q, %v, %v", b, ok, err)
	}
	if err := s.Commit("b", []byte("y"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Find("b"); err != nil || ok {
		t.Fatalf("Find(b) after a commit in the past: %v, %v", ok, err)
	}
	time.Sleep(400 * time.Millisecond)
	if _, ok, err := s.Find("a"); err != nil || ok {
		t.Fatalf("Find(a) after its expiry: %v, %v", ok, err)
	}
	all, err := s.All()
	if err != nil || all == nil || len(all) != 0 {
		t.Fatalf("All = %v, %v; want an empty map", all, err)
	}
	if err := s.Delete("nosuch"); err != nil {
		t.Fatalf("Delete of a missing session: %v", err)
	}
}
