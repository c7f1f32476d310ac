//go:build unix

package sharedstate_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/sharedstate/sharedstate"
)

// openExample opens the state "myapp" in a directory of its own, apart
// from any real app's (real code leaves the directory to its default), and
// returns it with a function that closes it and removes the directory.
func openExample(ctx context.Context) (*sharedstate.State, func()) {
	dir := exampleDir()
	st, err := sharedstate.Open(ctx, "myapp", sharedstate.WithDir(dir))
	if err != nil {
		log.Fatal(err)
	}
	return st, func() { st.Close(); os.RemoveAll(dir) }
}

func exampleDir() string {
	dir, err := os.MkdirTemp("", "sharedstate-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir
}

// Every worker process of an app opens the same named state at startup.
// The first becomes its owner; the others connect to it.
func ExampleOpen() {
	ctx := context.Background()
	dir := exampleDir()
	defer os.RemoveAll(dir)

	st, err := sharedstate.Open(ctx, "myapp", sharedstate.WithDir(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	fmt.Println("owner:", st.IsOwner())
	// Output: owner: true
}

func ExampleCounter() {
	ctx := context.Background()
	st, done := openExample(ctx) // sharedstate.Open(ctx, "myapp"), in a directory of its own
	defer done()

	hits := st.Counter("hits")
	for range 3 {
		if _, err := hits.Add(ctx, 1); err != nil {
			log.Fatal(err)
		}
	}
	n, err := hits.Load(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hits:", n)
	// Output: hits: 3
}

type Session struct {
	User  string
	Roles []string
}

func ExampleMap() {
	ctx := context.Background()
	st, done := openExample(ctx) // sharedstate.Open(ctx, "myapp"), in a directory of its own
	defer done()

	sessions := sharedstate.NewMap[Session](st, "sessions")
	err := sessions.Store(ctx, "c0ffee", Session{User: "ada", Roles: []string{"admin"}},
		sharedstate.WithTTL(30*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	s, ok, err := sessions.Load(ctx, "c0ffee")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ok, s.User, s.Roles)
	// Output: true ada [admin]
}

// Update is the read-modify-write that Load followed by Store is not: no
// other process's update can slip in between.
func ExampleMap_Update() {
	ctx := context.Background()
	st, done := openExample(ctx) // sharedstate.Open(ctx, "myapp"), in a directory of its own
	defer done()

	carts := sharedstate.NewMap[[]string](st, "carts")
	for _, item := range []string{"tea", "milk"} {
		_, err := carts.Update(ctx, "ada", func(cart []string, ok bool) ([]string, error) {
			return append(cart, item), nil
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	cart, _, err := carts.Load(ctx, "ada")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cart)
	// Output: [tea milk]
}

// Wrap serialises a handler across every worker process, as a
// sync.Mutex would within one.
func ExampleMutex_Wrap() {
	ctx := context.Background()
	st, done := openExample(ctx) // sharedstate.Open(ctx, "myapp"), in a directory of its own
	defer done()

	stock := st.Counter("stock")
	stock.Store(ctx, 1)
	buy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Check-then-act is safe here: no other worker runs this meanwhile.
		n, err := stock.Load(r.Context())
		if err != nil || n == 0 {
			http.Error(w, "sold out", http.StatusConflict)
			return
		}
		stock.Add(r.Context(), -1)
		fmt.Fprintln(w, "bought")
	})
	handler := st.Mutex("checkout").Wrap(buy)

	for range 2 {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("POST", "/buy", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 bought
	// 409 sold out
}

// Every worker subscribes at startup; any worker's Publish reaches them all.
func ExampleState_Subscribe() {
	ctx := context.Background()
	st, done := openExample(ctx) // sharedstate.Open(ctx, "myapp"), in a directory of its own
	defer done()

	drops, err := st.Subscribe(ctx, "cache")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := st.Publish(ctx, "cache", []byte("drop users")); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", <-drops)
	// Output: drop users
}

func ExampleMap_Watch() {
	ctx := context.Background()
	st, done := openExample(ctx) // sharedstate.Open(ctx, "myapp"), in a directory of its own
	defer done()

	flags := sharedstate.NewMap[bool](st, "flags")
	changes, err := flags.Watch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	flags.Store(ctx, "dark-mode", true)
	flags.Delete(ctx, "dark-mode")
	for range 2 {
		c := <-changes
		fmt.Println(c.Key, "deleted:", c.Deleted)
	}
	// Output:
	// dark-mode deleted: false
	// dark-mode deleted: true
}
