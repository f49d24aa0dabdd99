package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"
)

// allowedAuthFile describes the zookeeper.auth_file key.
const allowedAuthFile = "empty (no credentials: plugdb's znodes are open to every ZooKeeper client), or the path of a file holding one line user:password (a user of letters, digits, '.', '_' and '-'; a password of printable characters without spaces at either end)"

// checkAuthFileName checks the key's value as loaded; Validate reads the file.
func checkAuthFileName(s string) *valueError {
	if s != "" && strings.TrimSpace(s) == "" {
		return bad("blank", allowedAuthFile)
	}
	return nil
}

// checkAuthFile checks that the file s names holds credentials.
func checkAuthFile(s string) *valueError {
	if s == "" {
		return nil
	}
	if _, _, err := ReadAuthFile(s); err != nil {
		var e *valueError
		if errors.As(err, &e) {
			return e
		}
		return bad(err.Error(), allowedAuthFile)
	}
	return nil
}

// ReadAuthFile reads ZooKeeper digest credentials, one line user:password,
// from the file at path (a trailing newline is allowed). Its errors name the
// problem and what is allowed, never the file's content.
func ReadAuthFile(path string) (user, password string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", bad("no such file", allowedAuthFile)
		}
		return "", "", bad(fmt.Sprintf("cannot read it: %v", errors.Unwrap(err)), allowedAuthFile)
	}
	user, password, e := parseAuth(string(data))
	if e != nil {
		return "", "", e
	}
	return user, password, nil
}

// parseAuth parses the content of a credentials file.
func parseAuth(s string) (user, password string, e *valueError) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	switch {
	case s == "":
		return "", "", bad("the file is empty", allowedAuthFile)
	case strings.ContainsAny(s, "\r\n"):
		return "", "", bad("the file has more than one line", allowedAuthFile)
	}
	user, password, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return "", "", bad("no ':' between user and password", allowedAuthFile)
	case user == "":
		return "", "", bad("the user is empty", allowedAuthFile)
	case password == "":
		return "", "", bad("the password is empty", allowedAuthFile)
	case strings.TrimSpace(password) != password:
		return "", "", bad("the password starts or ends with a space", allowedAuthFile)
	}
	for _, r := range user {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) || r == '.' || r == '_' || r == '-') {
			return "", "", bad(fmt.Sprintf("the user holds %q", r), allowedAuthFile)
		}
	}
	for _, r := range password {
		if !unicode.IsPrint(r) {
			return "", "", bad("the password holds a control character", allowedAuthFile)
		}
	}
	return user, password, nil
}
