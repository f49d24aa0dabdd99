// Package partitioners is the partitioner contract of plugdb: a partitioner maps
// keys to partitions. (The plugin form of this contract comes with the cluster;
// for now the bundled hash partitioner is linked in.)
package partitioners
