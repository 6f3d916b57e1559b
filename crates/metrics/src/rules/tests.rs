mod files;
mod templates;
mod manager;
mod alertmanager;
