package sharedstate

import (
	"context"
	"os"
	"time"

	"github.com/sharedstate/sharedstate/internal/store"

	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/transport"
)

// offline serves an observer's reads from a copy of the state read from its
// files, while no owner runs. Once a process takes the state's lock, offline
// reports itself lost, so that the observer connects to the new owner.
type offline struct {
	store *store.Store
	sess  *store.Session
	owned chan struct{} // closed once a process holds the lock file
	quit  chan struct{}
	done  chan struct{}
}

// ownerPoll is how often an offline observer looks for a new owner.
const ownerPoll = 250 * time.Millisecond

func openOffline(st *embedded) (*offline, error) {
	s, err := store.Read(st.dir, st.name)
	if err != nil {
		return nil, err
	}
	st.cfg.logger.Info("sharedstate: no owner; reading the state from its journal", "state", st.name)
	o := &offline{
		store: s,
		sess:  s.NewSession(st.clientID, os.Getpid(), func(transport.Response) {}),
		owned: make(chan struct{}),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go o.watchLock(st.dir, st.lockName())
	return o, nil
}

// watchLock closes owned once the lock file is held by another process.
func (o *offline) watchLock(dir *statedir.Dir, name string) {
	defer close(o.done)
	t := time.NewTicker(ownerPoll)
	defer t.Stop()
	for {
		select {
		case <-o.quit:
			return
		case <-t.C:
		}
		lf, err := dir.TryLock(name)
		if err == nil && lf == nil {
			close(o.owned)
			return
		}
		if lf != nil {
			lf.Release()
		}
	}
}

func (o *offline) do(ctx context.Context, req *transport.Request) (transport.Response, error) {
	if req.Op.Mutates() || store.IsMessageOp(req.Op) || req.Op == transport.OpLockHeld {
		return transport.Response{ID: req.ID, Status: transport.StatusReadOnly,
			Msg: "no owner is running, and an observer reads the state from its journal"}, nil
	}
	resp, _ := o.store.Apply(o.sess, req)
	return resp, nil
}

func (o *offline) lost() <-chan struct{} { return o.owned }

func (o *offline) close() {
	close(o.quit)
	<-o.done
}
