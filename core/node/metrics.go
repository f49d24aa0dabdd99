package node

// Role returns the replica's role in its partition's election
// (coord.RoleLeader or coord.RoleFollower) and the epoch it last knew.
func (n *Node) Role() (string, uint64) { return n.cand.Role() }
