package zkserver

import (
	"fmt"
	"os/exec"
)

// debianCLI is ZooKeeper's command-line client as Debian's zookeeper package
// installs it.
const debianCLI = debianHome + "/bin/zkCli.sh"

// FindCLI locates ZooKeeper's command-line client, zkCli.sh: Debian's, else
// one on PATH. Its error wraps ErrNotInstalled and says how to install it.
func FindCLI() (string, error) {
	return findCLI(debianCLI)
}

func findCLI(debian string) (string, error) {
	if isExecutable(debian) {
		return debian, nil
	}
	if p, err := exec.LookPath("zkCli.sh"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("ZooKeeper's zkCli.sh not found (looked in %s and PATH): install it with `sudo apt-get install zookeeper` (Debian/Ubuntu): %w",
		debian, ErrNotInstalled)
}
