"""Operations on the fleet database: pgBackRest backups, restore points, restores."""
