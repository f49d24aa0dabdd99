package wal

import "testing"

func TestDivergence(t *testing.T) {
	type h = []EpochStart
	for _, c := range []struct {
		name         string
		leader       h
		leaderLast   uint64
		follower     h
		followerLast uint64
		want         uint64
	}{
		{"identical", h{{1, 1}, {2, 11}}, 20, h{{1, 1}, {2, 11}}, 20, 20},
		{"both empty", nil, 0, nil, 0, 0},
		{"empty follower at 0", h{{1, 1}, {2, 11}}, 20, nil, 0, 0},
		{"empty leader at 0", nil, 0, h{{1, 1}}, 5, 0},
		{"follower behind", h{{1, 1}, {2, 11}}, 20, h{{1, 1}}, 7, 7},
		{"follower behind across epochs", h{{1, 1}, {2, 11}, {5, 30}}, 40, h{{1, 1}, {2, 11}}, 15, 15},
		{"follower ahead, same epochs", h{{1, 1}, {2, 11}}, 15, h{{1, 1}, {2, 11}}, 20, 15},
		{"deposed leader wrote alone", h{{1, 1}, {3, 11}}, 30, h{{1, 1}, {2, 11}}, 20, 10},
		{"deposed leader, follower ahead", h{{1, 1}, {3, 11}}, 12, h{{1, 1}, {2, 11}}, 20, 10},
		{"kafka", h{{1, 1}, {2, 9}, {4, 12}}, 20, h{{1, 1}, {3, 6}}, 10, 5},
		{"follower epoch started later", h{{1, 1}, {2, 9}}, 20, h{{1, 1}, {2, 12}}, 15, 8},
		{"different first epoch", h{{2, 1}}, 10, h{{1, 1}}, 10, 0},
		{"follower reset at 100 of epoch 3", h{{1, 1}, {3, 60}}, 150, h{{3, 100}}, 100, 100},
		{"follower reset, then appended", h{{1, 1}, {3, 60}, {4, 120}}, 150, h{{3, 100}, {4, 120}}, 130, 130},
		{"follower reset, diverged after", h{{1, 1}, {3, 60}, {5, 110}}, 150, h{{3, 100}, {4, 110}}, 130, 109},
		{"follower reset base of another epoch", h{{1, 1}, {4, 90}}, 150, h{{3, 100}}, 100, 0},
		{"follower reset ahead of leader", h{{1, 1}, {3, 60}}, 80, h{{3, 100}}, 120, 0},
		{"leader reset, follower older", h{{3, 100}}, 150, h{{1, 1}, {3, 60}}, 120, 120},
		{"leader reset above follower", h{{5, 200}}, 250, h{{1, 1}}, 150, 0},
		{"both reset, overlapping", h{{3, 100}}, 150, h{{3, 120}}, 130, 130},
		{"both reset, different epochs", h{{3, 100}}, 150, h{{4, 120}}, 130, 0},
		{"history entries past last ignored", h{{1, 1}, {2, 11}}, 20, h{{1, 1}, {2, 11}}, 8, 8},
	} {
		if got := Divergence(c.leader, c.leaderLast, c.follower, c.followerLast); got != c.want {
			t.Errorf("%s: Divergence(%v, %d, %v, %d) = %d, want %d",
				c.name, c.leader, c.leaderLast, c.follower, c.followerLast, got, c.want)
		}
		if m := min(c.leaderLast, c.followerLast); Divergence(c.leader, c.leaderLast, c.follower, c.followerLast) > m {
			t.Errorf("%s: result above min(last)", c.name)
		}
	}
}
