package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/orderly/orderly/internal/eventstore"
)

// AdminPasswordEnv holds the password of the event store's admin user;
// set, it turns the store's access control on (which needs TLS). It is
// read from the environment only, never a flag: a command line is visible
// to every user of the machine.
const AdminPasswordEnv = "ORDERLY_EVENTSTORE_ADMIN_PASSWORD"

// storeAccess is the embedded event store's access control: the admin
// user (in $admins) with the password of AdminPasswordEnv, and the users
// of usersFile, one `NAME PASSWORD [GROUP,...]` a line ('#' comments). Nil
// when the password is not set (then usersFile must not be either).
func storeAccess(usersFile string) (*eventstore.Access, error) {
	password := os.Getenv(AdminPasswordEnv)
	if password == "" {
		if usersFile != "" {
			return nil, fmt.Errorf("event store users %s: set %s too, which turns access control on", usersFile, AdminPasswordEnv)
		}
		return nil, nil
	}
	users := []eventstore.User{{Name: "admin", Password: password, Groups: []string{eventstore.AdminsGroup}}}
	if usersFile != "" {
		more, err := readStoreUsers(usersFile)
		if err != nil {
			return nil, fmt.Errorf("event store users %s: %w", usersFile, err)
		}
		users = append(users, more...)
	}
	access, err := eventstore.NewAccess(users)
	if err != nil {
		return nil, fmt.Errorf("event store access (%s): %w", AdminPasswordEnv, err)
	}
	return access, nil
}

func readStoreUsers(path string) ([]eventstore.User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var users []eventstore.User
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) > 3:
			return nil, fmt.Errorf("line %d: want NAME PASSWORD [GROUP,...]", n)
		case len(fields) == 1:
			return nil, fmt.Errorf("line %d: no password", n)
		case fields[0] == "admin":
			return nil, errors.New("admin's password comes from " + AdminPasswordEnv)
		}
		u := eventstore.User{Name: fields[0], Password: fields[1]}
		if len(fields) == 3 {
			u.Groups = strings.Split(fields[2], ",")
		}
		users = append(users, u)
	}
	return users, sc.Err()
}
